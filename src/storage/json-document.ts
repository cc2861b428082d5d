// A small JSON document in the blob store changed with conditional writes (read, decide, write
// If-Match / If-None-Match; on a lost race, again), so every process sees one order of changes:
// the ESP account locks and the OAuth refresh leases are built on it.
import type { BlobStore } from './blob-store';
import { ConflictError, NotFoundError } from './errors';

const MAX_CONFLICTS = 20;

export async function readJsonDocument<T>(
  blobs: BlobStore,
  key: string,
): Promise<{ doc: T; etag: string } | undefined> {
  try {
    const blob = await blobs.get(key);
    return { doc: JSON.parse(blob.body.toString('utf8')) as T, etag: blob.etag };
  } catch (err) {
    if (err instanceof NotFoundError) return undefined;
    throw err;
  }
}

/** `decide` sees the document (undefined: none) and answers what to write, if anything, and what to return. */
export async function changeJsonDocument<T, A>(
  blobs: BlobStore,
  key: string,
  decide: (doc: T | undefined) => { write?: T; answer: A },
): Promise<A> {
  for (let attempt = 1; ; attempt++) {
    const current = await readJsonDocument<T>(blobs, key);
    const { write, answer } = decide(current?.doc);
    if (!write) return answer;
    try {
      await blobs.put(key, JSON.stringify(write) + '\n', {
        ...(current ? { ifMatch: current.etag } : { ifNoneMatch: '*' as const }),
        contentType: 'application/json',
      });
      return answer;
    } catch (err) {
      if (!(err instanceof ConflictError) || attempt >= MAX_CONFLICTS) throw err;
    }
  }
}
