// What a configuration run takes, shows and returns: shared by configurationSyncWorkflow and the
// legacy run it replaced (src/workflows/legacy), which must keep replaying.
import { ApplicationFailure, defineQuery, defineSignal } from '@temporalio/workflow';
import type { RunSummary } from '../runs/summaries';
import { runNotes } from '../runs/report';

export interface ConfigurationSyncInput {
  configurationId: string;
  /** YYYY-MM-DD: names the run's folder. */
  runDate: string;
  /**
   * Set for runs outside the schedule (e.g. `manual-080503-k3f2`): their files go to
   * runs/<id>/<runDate>_<folderSuffix>/. A run whose folder another run already holds gets a
   * folder of its own (`<runDate>_run-<8 characters of its Temporal run id>`): no two runs share
   * files.
   */
  folderSuffix?: string;
  mode: 'incremental' | 'full';
  /** Export and report what would be written (and what maintenance would do); nothing is written to the ESP. */
  dryRun?: boolean;
  /**
   * Full runs only, asked for by an operator: contacts holding a value espresso would not write
   * itself (e.g. an earlier tool's `legacy42`) get a new one. By default every value is kept.
   */
  replaceForeignValues?: boolean;
  /** Legacy redispatch flag (runs of earlier versions); new redispatches set `retryOf`. */
  onlyPending?: boolean;
  /**
   * Redispatch: the folder of an earlier run whose values are written again to those of its
   * contacts that were not updated and still hold no value in the ESP.
   */
  retryOf?: string;
  /** The run gives up (reported as timed_out) after this long. Default 20 hours. */
  deadlineMs?: number;
  /** Continue-as-new past this many history events (20-10,000; default 2,000). For tests. */
  maxHistoryEvents?: number;
}

export interface ConfigurationSyncResult {
  configurationId: string;
  status: RunSummary['status'];
  exported: number;
  updated: number;
  rejected: number;
  reason?: string;
  /** What the run did beyond its counts, in words (e.g. `would create field lcee`): src/runs/report.ts. */
  notes?: string[];
}

export interface SyncProgress {
  phase: 'starting' | 'maintenance' | 'export' | 'dispatch' | 'summary' | 'done';
  contactsExported: number;
  chunksDone: number;
  /** While `exporting`, the chunks exported so far: it grows until the export ends. */
  chunksTotal: number;
  updated: number;
  rejected: number;
  /** The export still runs beside the chunk updates (runs that dispatch while exporting). */
  exporting?: boolean;
}

/** A run's input as earlier versions started (or continued) it: folderSuffix was named `runId`. */
export type WithEarlierNames<T extends ConfigurationSyncInput> = Omit<T, 'folderSuffix'> & { runId?: string };

/** The input under its current names, whichever names it came with. */
export function withCurrentNames<T extends ConfigurationSyncInput>(input: T | WithEarlierNames<T>): T {
  if (!input || typeof input !== 'object' || !('runId' in input)) return input as T;
  const { runId, ...rest } = input;
  const folderSuffix = (rest as Partial<T>).folderSuffix ?? runId;
  return (folderSuffix === undefined ? rest : { ...rest, folderSuffix }) as T;
}

export const progressQuery = defineQuery<SyncProgress>('progress');
/**
 * A run waiting for the ESP account asks its holder to say when it gives the account back; with
 * `guest`, it may be lent what the holder's ending chunks held meanwhile (runs of earlier versions
 * never say so).
 */
export const accountWantedSignal = defineSignal<[{ workflowId: string; guest?: boolean }]>('accountWanted');
/** The holder gave the account back: the waiting run tries to take it at once. */
export const accountFreedSignal = defineSignal('accountFreed');

export function validate(input: ConfigurationSyncInput): void {
  const problems: string[] = [];
  if (!input || typeof input !== 'object') problems.push('input must be an object');
  else {
    if (typeof input.configurationId !== 'string' || !/^cfg_[a-z0-9]{8,32}$/.test(input.configurationId)) {
      problems.push('configurationId must look like cfg_ followed by 8-32 lowercase letters/digits');
    }
    if (typeof input.runDate !== 'string' || !isCalendarDay(input.runDate)) {
      problems.push('runDate must be YYYY-MM-DD (a day of the calendar)');
    }
    if (
      input.folderSuffix !== undefined &&
      (typeof input.folderSuffix !== 'string' || !/^[a-z0-9-]{1,40}$/.test(input.folderSuffix))
    ) {
      problems.push('folderSuffix must be 1-40 lowercase letters, digits or -');
    }
    if (input.mode !== 'incremental' && input.mode !== 'full')
      problems.push('mode must be "incremental" or "full"');
    if (
      input.retryOf !== undefined &&
      (typeof input.retryOf !== 'string' || !/^\d{4}-\d{2}-\d{2}(_[a-z0-9-]{1,40})?$/.test(input.retryOf))
    ) {
      problems.push('retryOf must be a run folder like 2026-11-28 or 2026-11-28_manual-080503-k3f2');
    }
    if (input.retryOf !== undefined && input.dryRun) problems.push('a redispatch cannot be a dry run');
    if (input.replaceForeignValues !== undefined && typeof input.replaceForeignValues !== 'boolean')
      problems.push('replaceForeignValues must be true or false');
    if (input.replaceForeignValues && (input.mode !== 'full' || input.retryOf !== undefined))
      problems.push('replaceForeignValues needs mode "full" (and no retryOf)');
    if (
      input.maxHistoryEvents !== undefined &&
      !(
        Number.isInteger(input.maxHistoryEvents) &&
        input.maxHistoryEvents >= 20 &&
        input.maxHistoryEvents <= 10_000
      )
    ) {
      problems.push('maxHistoryEvents must be an integer from 20 to 10000');
    }
    if (
      input.deadlineMs !== undefined &&
      (typeof input.deadlineMs !== 'number' ||
        !(input.deadlineMs >= 1_000 && input.deadlineMs <= 7 * 86_400_000))
    ) {
      problems.push('deadlineMs must be between one second and seven days');
    }
  }
  if (problems.length)
    throw ApplicationFailure.nonRetryable(`invalid input: ${problems.join('; ')}`, 'InvalidInput');
}

function isCalendarDay(d: string): boolean {
  if (!/^\d{4}-\d{2}-\d{2}$/.test(d)) return false;
  const t = Date.parse(`${d}T00:00:00Z`);
  return !Number.isNaN(t) && new Date(t).toISOString().slice(0, 10) === d;
}

export function runFolder(runDate: string, folderSuffix?: string): string {
  return folderSuffix ? `${runDate}_${folderSuffix}` : runDate;
}

/**
 * The run folder as an activity (or a dispatch) is given it: as `runFolder`, and as `runDate`, the
 * name workers of earlier versions read, so that one of them that picks the task up while workers
 * are upgraded works in the same folder.
 */
export function runFolderFields(folder: string): { runFolder: string; runDate: string } {
  return { runFolder: folder, runDate: folder };
}

/** Markdown for the Web UI's "current details". */
export function describe(s: RunSummary): string {
  const kinds = Object.entries(s.rejectedByKind)
    .map(([k, n]) => `${k}: ${n}`)
    .join(', ');
  return [
    `**${s.status}**${s.dryRun ? ' (dry run)' : ''} · ${s.esp} · ${s.runDate} · ${s.mode}`,
    `exported ${s.contacts.exported} · already set ${s.contacts.alreadySet} · updated ${s.contacts.updated} · rejected ${s.contacts.rejected}${kinds ? ` (${kinds})` : ''}`,
    `chunks ${s.chunks} · ${Math.round(s.durationsMs.total / 1000)} s`,
    runNotes(s).join(' · '),
    s.reason ? `reason: ${s.reason}` : '',
  ]
    .filter(Boolean)
    .join('\n\n');
}
