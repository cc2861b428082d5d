// One bad row never fails or hides the others: when an ESP rejects a whole batch, the rows it
// points at (or, without pointers, each half in turn) are set apart and the rest written again.
import { RequestRejectedError, TransientError } from '../errors';
import type { ContactResult, ContactUpdate } from '../types';
import { shapeChecked } from './shape';

/**
 * `update(batch)`, with the rows of a whole-batch rejection isolated: the ESP's row pointers, else
 * bisection. One result per row; an answer that misses rows is a TransientError (rewriting the
 * same values is safe).
 */
export async function writeIsolatingBadRows(
  batch: ContactUpdate[],
  update: (batch: ContactUpdate[]) => Promise<ContactResult[]>,
): Promise<ContactResult[]> {
  let results: ContactResult[];
  try {
    results = await shapeChecked(() => update(batch));
  } catch (err) {
    if (!(err instanceof RequestRejectedError)) throw err;
    return isolate(batch, err, update);
  }
  const ids = new Set(results.map((r) => r.contactId));
  if (results.length !== batch.length || batch.some((u) => !ids.has(u.contactId))) {
    // Unknown outcome for some rows: rewriting the same values is safe, so retry the batch.
    throw new TransientError(`the ESP returned ${results.length} results for ${batch.length} contacts`);
  }
  return results;
}

async function isolate(
  batch: ContactUpdate[],
  err: RequestRejectedError,
  update: (batch: ContactUpdate[]) => Promise<ContactResult[]>,
): Promise<ContactResult[]> {
  const reject = (u: ContactUpdate): ContactResult => ({
    contactId: u.contactId,
    status: 'rejected',
    reason: err.message,
  });
  if (batch.length === 1) return [reject(batch[0]!)];
  const rows = (err.rows ?? []).filter((i) => Number.isInteger(i) && i >= 0 && i < batch.length);
  if (rows.length > 0) {
    const bad = new Set(rows);
    const rest = batch.filter((_, i) => !bad.has(i));
    return [
      ...batch.filter((_, i) => bad.has(i)).map(reject),
      ...(rest.length ? await writeIsolatingBadRows(rest, update) : []),
    ];
  }
  const half = Math.ceil(batch.length / 2);
  const [left, right] = await Promise.all([
    writeIsolatingBadRows(batch.slice(0, half), update),
    writeIsolatingBadRows(batch.slice(half), update),
  ]);
  return [...left, ...right];
}
