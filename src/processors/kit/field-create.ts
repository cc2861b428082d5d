import { RequestRejectedError } from '../errors';

/**
 * Creates the custom field. When the ESP refuses (most answer 400 for a name that exists), a
 * concurrent run may have created it since this one looked: found now, it counts as existing.
 */
export async function createUnlessRaced(
  create: () => Promise<unknown>,
  exists: () => Promise<boolean>,
): Promise<'created' | 'exists'> {
  try {
    await create();
    return 'created';
  } catch (err) {
    if (err instanceof RequestRejectedError && (await exists())) return 'exists';
    throw err;
  }
}

/** The offset a listing cursor holds, for ESPs that page by offset (Mailchimp, Brevo); 0 at first. */
export function offsetOf(cursor: string | undefined): number {
  const offset = cursor ? Number(cursor) : 0;
  if (!Number.isSafeInteger(offset) || offset < 0) throw new RequestRejectedError('bad listing cursor');
  return offset;
}

/**
 * The cursor of the page after the one at `cursor`, `size` contacts on, for ESPs that page by
 * offset (their pageAfter); undefined for a cursor that holds no offset, or a page that would
 * start at or past `total` (the list's size, when known).
 */
export function offsetAfter(cursor: string | undefined, size: number, total?: number): string | undefined {
  const offset = cursor ? Number(cursor) : 0;
  if (!Number.isSafeInteger(offset) || offset < 0) return undefined;
  return total !== undefined && offset + size >= total ? undefined : String(offset + size);
}
