import {
  continueAsNew,
  defineQuery,
  getExternalWorkflowHandle,
  proxyActivities,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { WithEarlierFolderName } from '../activities/run-folder';
import type { ChunkOutcome } from '../activities/update-chunk';
import { runFolderFields } from './configuration-run';
import { chunkUpdateRetry } from './retry-policies';
import { dispatchProgressSignal, type DispatchTotals } from './signals';

const { updateChunk } = proxyActivities<Activities>({
  startToCloseTimeout: '30 minutes',
  // Bounded like the chunks of current runs (activity options are not part of replay).
  scheduleToCloseTimeout: '6 hours',
  // The activities heartbeat every 5 s, even while an ESP request is slow.
  heartbeatTimeout: '20 seconds',
  retry: chunkUpdateRetry,
});

export interface DispatchInput {
  configurationId: string;
  /** The run's folder under runs/<configurationId>/. */
  runFolder: string;
  chunkCount: number;
  /** Chunk updates in flight at once. */
  window: number;
  onlyPending: boolean;
  /** Carried across continue-as-new. */
  nextChunk?: number;
  totals?: DispatchTotals;
}

export const dispatchProgressQuery = defineQuery<DispatchTotals & { chunksTotal: number }>('progress');

/** Continue-as-new well before histories get long (and whenever Temporal suggests it). */
const MAX_HISTORY_EVENTS = 1_500;

/**
 * Walks a run's chunk files with a sliding window of chunk-update activities. Reports progress to
 * the parent (throttled) and through its own `progress` query; continues-as-new with the next
 * chunk and the running totals when its history grows.
 */
export async function dispatchWorkflow(
  given: DispatchInput | WithEarlierFolderName<DispatchInput>,
): Promise<DispatchTotals> {
  const input = withCurrentNames(given);
  const totals: DispatchTotals = input.totals ?? {
    chunksDone: 0,
    updated: 0,
    rejected: 0,
    rejectedByKind: {},
  };
  setHandler(dispatchProgressQuery, () => ({ ...totals, chunksTotal: input.chunkCount }));
  const parent = workflowInfo().parent;
  const reportEvery = Math.max(1, Math.ceil(input.chunkCount / 40));

  let next = input.nextChunk ?? 1;
  const inFlight = new Map<number, Promise<void>>();
  const run = (chunk: number) =>
    updateChunk({
      configurationId: input.configurationId,
      ...runFolderFields(input.runFolder),
      chunk,
      onlyPending: input.onlyPending,
    })
      .then(async (outcome: ChunkOutcome) => {
        add(totals, outcome);
        if (parent && (totals.chunksDone % reportEvery === 0 || totals.chunksDone === input.chunkCount)) {
          await getExternalWorkflowHandle(parent.workflowId, parent.runId).signal(dispatchProgressSignal, {
            ...totals,
          });
        }
      })
      .finally(() => inFlight.delete(chunk));

  const historyLong = () =>
    workflowInfo().continueAsNewSuggested || workflowInfo().historyLength > MAX_HISTORY_EVENTS;

  while (next <= input.chunkCount || inFlight.size > 0) {
    while (next <= input.chunkCount && inFlight.size < input.window && !historyLong()) {
      inFlight.set(next, run(next));
      next++;
    }
    if (inFlight.size === 0) break;
    await Promise.race(inFlight.values());
  }
  if (next <= input.chunkCount) {
    await continueAsNew<typeof dispatchWorkflow>({ ...input, nextChunk: next, totals });
  }
  return totals;
}

/** Dispatches started (or continued as new) by earlier versions name the run's folder `runDate`. */
function withCurrentNames(input: DispatchInput | WithEarlierFolderName<DispatchInput>): DispatchInput {
  if ('runFolder' in input) return input;
  const { runDate, ...rest } = input;
  return { ...rest, runFolder: runDate };
}

function add(totals: DispatchTotals, outcome: ChunkOutcome): void {
  totals.chunksDone++;
  totals.updated += outcome.updated;
  totals.rejected += outcome.rejected;
  for (const [kind, n] of Object.entries(outcome.rejectedByKind)) {
    totals.rejectedByKind[kind] = (totals.rejectedByKind[kind] ?? 0) + n;
  }
}
