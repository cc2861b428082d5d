// Which code paths a configuration run takes: one marker for runs of this version, the earlier
// markers one by one for runs that started before it (docs/runs.md, "Replay safety").
import { patched } from '@temporalio/workflow';

/** Runs with this marker hold their ESP account while they write; older ones replay the legacy code. */
export const ONE_WRITER_PATCH = 'one-writer';

/**
 * Runs with this marker hand the ESP account over: a waiting run asks the holder to tell it when
 * it gives the account back, and takes it at once (sync/take-account.ts); runs older than it
 * neither ask nor tell.
 */
export const HANDOFF_PATCH = 'account-handoff';

/**
 * Runs with this marker update chunks while the export still lists: the export runs in parts, and
 * each part hands the run the chunk files it made durable. Older runs export first, then dispatch.
 */
export const EXPORT_PARTS_PATCH = 'dispatch-while-exporting';

/**
 * Runs with this marker give each chunk beside the export 1/(concurrency - 1) of what the export
 * leaves, and start one more chunk when it ends, the chunks beside it then counting as
 * 1/concurrency each. Older runs gave a chunk 1/(chunks known) and waited for one to end.
 */
export const FULL_WINDOW_AFTER_EXPORT_PATCH = 'full-window-after-export';

/**
 * Runs with this marker (and the one above) count a chunk that was beside the export, once it has
 * ended, in a window no larger than the chunk files the export made: a run of 5 chunk files on an
 * account of 10 at once gives each 1/5 when the export ends, not 1/10 until chunks end.
 */
export const AFTER_EXPORT_BY_CHUNK_COUNT_PATCH = 'after-export-by-chunk-count';

/**
 * Runs with this marker follow what their context says of the export beside chunks: with more
 * than one slot for it (an ESP that pages by offset: PAGES_AT_ONCE pages on their way at once), that many
 * fewer chunks beside it; where the chunks beside it share the whole of a writing limit
 * (wholeWritingBeside), none starts in its place when it ends, and the run keeps that
 * many chunks in flight to its end, each with the same share. Older runs kept concurrency - 1
 * beside it and gave each 1/concurrency of the writing.
 */
export const EXPORT_BESIDE_PATCH = 'export-beside-by-context';

/**
 * Runs with this marker take every path guarded by the patches before it (one-writer,
 * account-handoff, dispatch-while-exporting, full-window-after-export,
 * after-export-by-chunk-count, export-beside-by-context) without recording each one: every
 * patched() records a marker and a TemporalChangeVersion update, 10 of the 48 events of a small
 * run. Runs started before it meet those patches one by one, as they did.
 */
export const RUNS_2026_12_PATCH = 'runs-2026-12';

/**
 * Runs with this marker take every path RUNS_2026_12_PATCH covers, and take their account and
 * record their summary as local activities (sync/state.ts, `steps`): each in the workflow task
 * that asks for it, without a task of its own on the server or a workflow task for its result.
 * Runs started before it record `runs-2026-12` (or the patches one by one) and call both as
 * activities, as they did.
 */
export const RUNS_LOCAL_STEPS_PATCH = 'runs-2026-12-local-steps';

/**
 * Runs with this marker lend what their ending chunks held to the run waiting for their account
 * (write-while-exporting.ts), and a run that waits may be such a guest (take-account.ts): it
 * maintains and lists on what it is lent, and writes once the account is its own. Recorded only by
 * runs that have a waiter or wait. Runs without it give the account back whole at their end.
 */
export const ACCOUNT_GUEST_PATCH = 'account-guest';

/**
 * Runs with this marker keep as many chunks beside the export as their context says where those
 * share a writing limit of the account's own (RunContext.chunksBeside: two, where they may), and
 * as many after it. Recorded only by runs whose context says it. Older runs kept concurrency -
 * exportSlots beside it.
 */
export const WRITING_CHUNKS_BESIDE_PATCH = 'writing-chunks-beside';

const BEFORE_IT = new Set([
  ONE_WRITER_PATCH,
  HANDOFF_PATCH,
  EXPORT_PARTS_PATCH,
  FULL_WINDOW_AFTER_EXPORT_PATCH,
  AFTER_EXPORT_BY_CHUNK_COUNT_PATCH,
  EXPORT_BESIDE_PATCH,
]);

/**
 * Called once, first thing in a run: whether the run takes the path each earlier patch guards.
 * One marker per run: the latest (RUNS_LOCAL_STEPS_PATCH) in runs of this version, which are never
 * asked for the one before it.
 */
export function patchesOfRun(): (patch: string) => boolean {
  const latest = patched(RUNS_LOCAL_STEPS_PATCH);
  const all = latest || patched(RUNS_2026_12_PATCH);
  // A patch added after them is checked the ordinary way, in every run.
  return (patch) =>
    patch === RUNS_LOCAL_STEPS_PATCH ? latest : (all && BEFORE_IT.has(patch)) || patched(patch);
}
