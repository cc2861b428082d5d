// Key rings: `<key id>:<base64 key>` entries, comma-separated; the first encrypts, every key
// decrypts, and what was encrypted names its key id. Used by the Temporal payload codec and the
// local secret store.

/** Keys by id; `current` encrypts, every key decrypts. */
export interface KeyRing {
  current: string;
  keys: Map<string, Buffer>;
}

/** A setting holding keys is malformed or lacks a key. Messages name entries, never key material. */
export class KeyRingError extends Error {
  override name = 'KeyRingError';
  constructor(
    /** Where the keys come from: an environment variable or a file. */
    readonly source: string,
    /** What is wrong, without the source. */
    readonly reason: string,
  ) {
    super(`${source}: ${reason}`);
  }
}

export const KEY_ID = /^[A-Za-z0-9_.-]{1,64}$/;

/** Parses `id:base64key[,id:base64key...]`; the first key encrypts. */
export function parseKeyRing(text: string, source: string): KeyRing {
  const keys = new Map<string, Buffer>();
  let current: string | undefined;
  text.split(',').forEach((raw, index) => {
    const entry = raw.trim();
    if (!entry) return;
    // Errors name the entry by position only: a malformed entry may hold key material anywhere.
    const position = `entry ${index + 1}`;
    const i = entry.indexOf(':');
    const id = i > 0 ? entry.slice(0, i) : '';
    if (!KEY_ID.test(id)) {
      throw new KeyRingError(
        source,
        `${position} must be <key id>:<base64 key>, key ids of letters, digits, _.-`,
      );
    }
    const key = Buffer.from(entry.slice(i + 1), 'base64');
    if (key.length !== 32)
      throw new KeyRingError(source, `${position}: the key must be 32 bytes, base64-encoded`);
    if (keys.has(id)) throw new KeyRingError(source, `${position} repeats the key id of an earlier entry`);
    keys.set(id, key);
    current ??= id;
  });
  if (!current) throw new KeyRingError(source, 'no key given');
  return { current, keys };
}

export function formatKeyRing(ring: KeyRing): string {
  const ordered = [ring.current, ...[...ring.keys.keys()].filter((id) => id !== ring.current)];
  return ordered.map((id) => `${id}:${ring.keys.get(id)!.toString('base64')}`).join(',');
}
