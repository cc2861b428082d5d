// Edits of the payload key ring, for the `keys` commands. Each returns a new ring. Messages name key
// ids the ring holds, never a string the user typed (it may be key material pasted in the wrong place).
import { randomBytes } from 'node:crypto';
import { KEY_ID } from '../lib/key-ring';
import { PayloadKeysError, type PayloadKeys } from '.';

/**
 * The ring with a new random key at its end, not current yet: `id`, else `k<YYYYMMDD>-<HHMMSS>` (UTC).
 * The default never repeats the id of a key retired earlier, which payloads may still name: a key of
 * the same id would then fail to authenticate them instead of being reported missing.
 */
export function withNewKey(
  ring: PayloadKeys,
  id?: string,
  now = new Date(),
): { ring: PayloadKeys; id: string } {
  if (id !== undefined) {
    if (!KEY_ID.test(id)) throw new PayloadKeysError('a key id is 1-64 letters, digits and _.-');
    if (ring.keys.has(id)) throw new PayloadKeysError(`the ring has a key ${id} already`);
  } else {
    const stamp = now.toISOString().replace(/[-:]/g, '');
    const base = `k${stamp.slice(0, 8)}-${stamp.slice(9, 15)}`;
    id = base;
    for (let n = 2; ring.keys.has(id); n++) id = `${base}-${n}`;
  }
  return { id, ring: { current: ring.current, keys: new Map([...ring.keys, [id, randomBytes(32)]]) } };
}

/** The ring with `id` encrypting new payloads. */
export function withCurrentKey(ring: PayloadKeys, id: string): PayloadKeys {
  assertKnown(ring, id);
  return { current: id, keys: ring.keys };
}

/** The ring without `id`, which must not be the current key. */
export function withoutKey(ring: PayloadKeys, id: string): PayloadKeys {
  assertKnown(ring, id);
  if (id === ring.current) {
    throw new PayloadKeysError(
      `${id} is the current key (it encrypts every new payload): make another key current first`,
    );
  }
  const keys = new Map(ring.keys);
  keys.delete(id);
  return { current: ring.current, keys };
}

export function assertKnown(ring: PayloadKeys, id: string): void {
  if (!ring.keys.has(id)) {
    throw new PayloadKeysError(`no key of that id in the ring; its keys are ${describeRing(ring)}`);
  }
}

/** The ids, the current one first, as the ring is written. */
export function orderedIds(ring: PayloadKeys): string[] {
  return [ring.current, ...[...ring.keys.keys()].filter((id) => id !== ring.current)];
}

/** "k2 (current), k1" */
export function describeRing(ring: PayloadKeys): string {
  return orderedIds(ring)
    .map((id) => (id === ring.current ? `${id} (current)` : id))
    .join(', ');
}
