// Typed storage errors: callers branch on the class, never on message text.

export class NotFoundError extends Error {
  override name = 'NotFoundError';
  constructor(
    readonly store: 'blob' | 'secret' | 'configuration',
    readonly key: string,
  ) {
    super(`${store} not found: ${key}`);
  }
}

/** A conditional write lost: the object changed (if-match) or already exists (if-none-match). */
export class ConflictError extends Error {
  override name = 'ConflictError';
  constructor(
    readonly store: 'blob' | 'secret' | 'configuration',
    readonly key: string,
  ) {
    super(`${store} changed concurrently: ${key}`);
  }
}

/** Stored data that cannot be read back as written (tampered, truncated, wrong key). */
export class CorruptDataError extends Error {
  override name = 'CorruptDataError';
  constructor(
    readonly store: 'blob' | 'secret' | 'configuration',
    readonly key: string,
    reason: string,
  ) {
    super(`${store} ${key} is unreadable: ${reason}`);
  }
}

/** Keys are validated before they reach a file system path or an API: no traversal, no surprises. */
export function assertValidKey(store: 'blob' | 'secret', key: string): void {
  const ok =
    key.length > 0 &&
    key.length <= 512 &&
    /^[A-Za-z0-9._\-/]+$/.test(key) &&
    !key.startsWith('/') &&
    !key.split('/').some((part) => part === '' || part === '.' || part === '..');
  if (!ok) throw new TypeError(`invalid ${store} key ${JSON.stringify(key.slice(0, 80))}`);
}
