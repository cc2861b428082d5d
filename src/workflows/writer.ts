import {
  ActivityCancellationType,
  CancellationScope,
  continueAsNew,
  getExternalWorkflowHandle,
  proxyActivities,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { ChunkOutcome } from '../activities/update-chunk';
import type { ListMode, MaintenanceReport } from '../processors/types';
import type { ExportManifest } from '../runs/files';
import { chunkOptions, exportOptions, maintenanceOptions } from './retry-policies';
import { writerProgressSignal, type DispatchTotals, type WriterProgress } from './signals';

// Activities stop before the writer does: the writer (the lock) is held until they have.
const stopTogether = { cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED };
const { runMaintenance } = proxyActivities<Activities>({ ...maintenanceOptions, ...stopTogether });
const { updateChunk } = proxyActivities<Activities>({ ...chunkOptions, ...stopTogether });

export interface WriterInput {
  configurationId: string;
  /** The run's folder: chunk and results files go there. */
  runFolder: string;
  mode: ListMode;
  maintenance: boolean;
  /** Chunk updates in flight at once (the ESP's concurrency); each takes its share of the account. */
  window: number;
  /** Redispatch: the earlier run folder whose unwritten values are written again (see exportContacts). */
  retryOf?: string;
  /** The run's deadline, which bounds the export. */
  deadlineMs: number;
  /** Carried across continue-as-new. */
  resume?: { result: WriterResult; nextChunk: number };
}

export interface WriterResult {
  maintenance?: MaintenanceReport;
  manifest?: ExportManifest;
  totals: DispatchTotals;
  durationsMs: { maintenance: number; export: number; dispatch: number };
}

/** Continue-as-new well before histories get long (and whenever Temporal suggests it). */
const MAX_HISTORY_EVENTS = 2_000;
/** Progress reports to the configuration run, at most this many per run. */
const REPORTS = 20;

/**
 * The one writer of a configuration. Its workflow id, `writer/<configurationId>`, is the lock: while
 * it runs no other run can start one, so no two runs ever write to one configuration at once.
 * Maintenance -> export -> a sliding window of chunk updates; continues-as-new (keeping its id,
 * so the lock) with the next chunk and the running totals when its history grows.
 */
export async function writerWorkflow(input: WriterInput): Promise<WriterResult> {
  const result: WriterResult = input.resume?.result ?? {
    totals: { chunksDone: 0, updated: 0, rejected: 0, rejectedByKind: {} },
    durationsMs: { maintenance: 0, export: 0, dispatch: 0 },
  };
  const tell = reporter(result);
  if (!result.manifest) {
    if (input.maintenance && !result.maintenance) {
      const t = Date.now();
      result.maintenance = await runMaintenance({ configurationId: input.configurationId });
      result.durationsMs.maintenance = Date.now() - t;
    }
    const t = Date.now();
    const { exportContacts } = proxyActivities<Activities>({
      ...exportOptions(input.deadlineMs),
      ...stopTogether,
    });
    result.manifest = await exportContacts({
      configurationId: input.configurationId,
      runDate: input.runFolder,
      mode: input.mode,
      retryOf: input.retryOf,
    });
    result.durationsMs.export = Date.now() - t;
    // A run of one chunk has nothing to report before its result.
    if (result.manifest.chunkCount > 1) tell('dispatch');
  }

  const { chunkCount } = result.manifest;
  // Fewer chunks than the window: each takes a bigger share of the account.
  const window = Math.max(1, Math.min(input.window, chunkCount));
  const reportEvery = Math.max(1, Math.ceil(chunkCount / REPORTS));
  const dispatchStarted = Date.now() - result.durationsMs.dispatch;
  let next = input.resume?.nextChunk ?? 1;
  const inFlight = new Map<number, Promise<void>>();
  const run = (chunk: number) =>
    updateChunk({
      configurationId: input.configurationId,
      runDate: input.runFolder,
      chunk,
      onlyPending: false,
      window,
      runLease: chunkCount === 1,
    })
      .then((outcome: ChunkOutcome) => {
        add(result.totals, outcome);
        const done = result.totals.chunksDone;
        if (done % reportEvery === 0 && done < chunkCount) tell('dispatch');
      })
      .finally(() => inFlight.delete(chunk));
  const historyLong = () =>
    workflowInfo().continueAsNewSuggested || workflowInfo().historyLength > MAX_HISTORY_EVENTS;

  // Chunk updates run in their own scope: when one fails, the others are cancelled and waited for,
  // so nothing writes once this writer (the lock) has ended.
  const chunks = new CancellationScope();
  try {
    while (next <= chunkCount || inFlight.size > 0) {
      while (next <= chunkCount && inFlight.size < window && !historyLong()) {
        const chunk = next++;
        inFlight.set(
          chunk,
          chunks.run(() => run(chunk)),
        );
      }
      if (inFlight.size === 0) break;
      await Promise.race(inFlight.values());
    }
  } catch (err) {
    chunks.cancel();
    await Promise.allSettled(inFlight.values());
    throw err;
  }
  result.durationsMs.dispatch = Date.now() - dispatchStarted;
  if (next <= chunkCount) {
    await continueAsNew<typeof writerWorkflow>({ ...input, resume: { result, nextChunk: next } });
  }
  return result;
}

/** Progress for the configuration run's `progress` query (its parent); counts only. */
function reporter(result: WriterResult) {
  return (phase: WriterProgress['phase']) => {
    const parent = workflowInfo().parent;
    if (!parent) return;
    const progress: WriterProgress = {
      phase,
      contactsExported: result.manifest?.contacts ?? 0,
      chunksTotal: result.manifest?.chunkCount ?? 0,
      chunksDone: result.totals.chunksDone,
      updated: result.totals.updated,
      rejected: result.totals.rejected,
    };
    // A parent that is gone (terminated) takes this writer with it: nothing to report to.
    void getExternalWorkflowHandle(parent.workflowId)
      .signal(writerProgressSignal, progress)
      .catch(() => undefined);
  };
}

function add(totals: DispatchTotals, outcome: ChunkOutcome): void {
  totals.chunksDone++;
  totals.updated += outcome.updated;
  totals.rejected += outcome.rejected;
  for (const [kind, n] of Object.entries(outcome.rejectedByKind)) {
    totals.rejectedByKind[kind] = (totals.rejectedByKind[kind] ?? 0) + n;
  }
}
