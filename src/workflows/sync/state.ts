// What the steps of a configuration run share: its state (carried across continue-as-new), the
// run's identity, and the activities more than one step calls.
import {
  ActivityCancellationType,
  continueAsNew,
  proxyActivities,
  proxyLocalActivities,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../../activities';
import type { RunContext } from '../../activities/configurations';
import type { ChunkOutcome } from '../../activities/update-chunk';
import type { MaintenanceReport } from '../../processors/types';
import type { LockOwner } from '../../runs/account-lock';
import type { ExportManifest } from '../../runs/files';
import {
  runFolderFields,
  type ConfigurationSyncInput,
  type ConfigurationSyncResult,
  type SyncProgress,
} from '../configuration-run';
import { chunkOptions, storeOptions } from '../retry-policies';
import { RUNS_LOCAL_STEPS_PATCH } from './patches';
import type { DispatchTotals } from '../signals';

/** Continue-as-new well before histories get long (and whenever Temporal suggests it). */
const MAX_HISTORY_EVENTS = 2_000;

// Activities stop before the run does: the account is given back only when none of them writes.
export const stopTogether = { cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED };
export const store = proxyActivities<Activities>(storeOptions);
/** The same, as local activities: run by the worker within the workflow task that asks for them. */
const local = proxyLocalActivities<Activities>(storeOptions);

/**
 * Taking the account and recording the summary: short store work at the run's two ends, local
 * activities in runs of this version (RUNS_LOCAL_STEPS_PATCH). A small run then has two fewer
 * workflow tasks and activity tasks on the server, and about 30 history events instead of 40.
 */
export function steps(run: Pick<SyncRun, 'patched'>): Pick<Activities, 'startRun' | 'recordRun'> {
  return run.patched(RUNS_LOCAL_STEPS_PATCH) ? local : store;
}
const { updateChunk } = proxyActivities<Activities>({ ...chunkOptions, ...stopTogether });

/** What a run has done so far; carried across continue-as-new. */
export interface RunState {
  startedAt: number;
  /** Epoch ms: the run gives up (timed_out) then. */
  deadlineAt: number;
  context: RunContext;
  maintenance?: MaintenanceReport;
  manifest?: ExportManifest;
  durationsMs: { maintenance: number; export: number; dispatch: number };
  totals: DispatchTotals;
  nextChunk: number;
  /** Dispatching while exporting: the chunks the export's parts made durable so far. */
  exported?: { chunkCount: number; contacts: number };
  /** Workflow ids of the runs waiting for the account: told when it is given back. */
  waiters?: string[];
  /** Those of them that may be lent some of the account as the run's last chunks end. */
  guests?: string[];
  /**
   * The run is the guest of this run, which holds the account (take-account.ts): it maintains and
   * lists on what it is lent, and starts no chunk until the account is its own.
   */
  guestOf?: string;
}

export type SyncInput = ConfigurationSyncInput & { state?: RunState };

/** The account's hand-over between runs: who waits for it, and whether its holder said it is free. */
export interface Handoff {
  /** HANDOFF_PATCH: runs older than it neither ask nor tell. */
  on: boolean;
  waiters: Set<string>;
  /** The waiters that may be its guests (write-while-exporting.ts lends to the first). */
  guests: Set<string>;
  freed: boolean;
}

/** One run, as every step sees it: what it was asked, who holds the account, what it shows. */
export interface SyncRun {
  input: SyncInput;
  owner: LockOwner;
  progress: SyncProgress;
  handoff: Handoff;
  /** Whether the run takes the path a patch guards (sync/patches.ts). */
  patched: (patch: string) => boolean;
}

/** The run of a configuration that another run is writing: it writes nothing. */
export class Busy extends Error {}
/** The run passed its deadline; its work was cancelled. */
export class DeadlinePassed extends Error {}

/** Whether the run's history is long enough to continue as new (input.maxHistoryEvents, or Temporal says so). */
export function historyLong(input: ConfigurationSyncInput): boolean {
  const limit = input.maxHistoryEvents ?? MAX_HISTORY_EVENTS;
  return workflowInfo().continueAsNewSuggested || workflowInfo().historyLength > limit;
}

/** The history events a run may still take before it continues as new. */
export function eventsLeft(input: ConfigurationSyncInput): number {
  return (input.maxHistoryEvents ?? MAX_HISTORY_EVENTS) - workflowInfo().historyLength;
}

/** Continues as new with the run's state. The account stays held: its lock names the workflow and its first run. */
export async function continueRun(run: SyncRun, s: RunState): Promise<never> {
  return continueAsNew<(input: SyncInput) => Promise<ConfigurationSyncResult>>({
    ...run.input,
    state: { ...s, waiters: [...run.handoff.waiters], guests: [...run.handoff.guests] },
  });
}

/**
 * One chunk's update with its share of the account; its outcome added to the run's totals and
 * progress. Returns how long before it ended its last request started (undefined: unknown).
 */
export async function updateOneChunk(
  { input, owner, progress }: SyncRun,
  s: RunState,
  chunk: number,
  share: {
    window: number;
    besideExport?: boolean;
    afterExportWindow?: number;
    afterExportByChunkCount?: boolean;
    afterExportKeepsOneForGuest?: boolean;
    followWindows?: boolean;
    inExportPlace?: boolean;
    shareOfExport?: boolean;
    exportSlots?: number;
    quietMs?: number;
  },
): Promise<number | undefined> {
  const outcome: ChunkOutcome = await updateChunk({
    configurationId: input.configurationId,
    ...runFolderFields(s.context.folder),
    chunk,
    onlyPending: false,
    window: share.window,
    ...(share.besideExport ? { besideExport: true } : {}),
    ...(share.afterExportWindow ? { afterExportWindow: share.afterExportWindow } : {}),
    ...(share.afterExportByChunkCount ? { afterExportByChunkCount: true } : {}),
    ...(share.afterExportKeepsOneForGuest ? { afterExportKeepsOneForGuest: true } : {}),
    ...(share.followWindows ? { followWindows: true } : {}),
    ...(share.inExportPlace ? { inExportPlace: true } : {}),
    ...(share.shareOfExport ? { shareOfExport: true } : {}),
    ...(share.exportSlots ? { exportSlots: share.exportSlots } : {}),
    ...(share.quietMs !== undefined ? { quietMs: share.quietMs } : {}),
    lock: owner,
  });
  add(s.totals, outcome);
  Object.assign(progress, {
    chunksDone: s.totals.chunksDone,
    updated: s.totals.updated,
    rejected: s.totals.rejected,
  });
  return outcome.quietMs;
}

function add(totals: DispatchTotals, outcome: ChunkOutcome): void {
  totals.chunksDone++;
  totals.updated += outcome.updated;
  totals.rejected += outcome.rejected;
  if (outcome.replaced) totals.replaced = (totals.replaced ?? 0) + outcome.replaced;
  for (const [kind, n] of Object.entries(outcome.rejectedByKind)) {
    totals.rejectedByKind[kind] = (totals.rejectedByKind[kind] ?? 0) + n;
  }
}
