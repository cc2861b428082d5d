import {
  defineSearchAttributeKey,
  SearchAttributeType,
  WorkflowExecutionAlreadyStartedError,
} from '@temporalio/common';
import {
  ApplicationFailure,
  condition,
  continueAsNew,
  defineQuery,
  isCancellation,
  ParentClosePolicy,
  patched,
  proxyActivities,
  setHandler,
  startChild,
  workflowInfo,
  WorkflowIdReusePolicy,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import { readable } from '../codec/readable-text';
import { workflowIds } from '../temporal/constants';
import { DEFAULT_DEADLINE_MS, configurationSyncWorkflow } from './configuration-sync';
import { failureTypes } from '../temporal/failure-types';
import { failureType, rootMessage } from './failures';
import { storeOptions } from './retry-policies';
import type { ConfigurationOutcome } from './signals';

import { dailySyncV1, type DailySyncOutcome } from './legacy/daily-sync-v1';

export type { DailySyncOutcome };

/** Daily runs with this marker page through the fleet (this file); older ones replay the legacy code. */
export const PAGED_DAILY_PATCH = 'paged-daily';
/**
 * Daily runs with this marker take the path `paged-daily` guards, and write outcomes in files of
 * at most OUTCOMES_PER_FILE lines, also while they list pages whose configurations they do not
 * start (disabled, needs_reauth, unreadable): before it, those outcomes waited until the listing
 * found a configuration to start or reached the fleet's end, so thousands of them in a row went
 * into one file, one activity's input (and a continue-as-new's) growing with the fleet. Runs with
 * `paged-daily` only replay as they ran.
 */
export const BOUNDED_OUTCOME_FILES_PATCH = 'daily-bounded-outcome-files';
/**
 * Configuration runs at once by default (runs of different ESP accounts never wait for each
 * other). About what one worker on two cores takes: docs/scale.md says how to size it for more.
 */
export const DEFAULT_DAILY_CONCURRENCY = 50;
const DEFAULT_PAGE_SIZE = 500;
/** Outcomes are written to the blob store in files of this many lines. */
const OUTCOMES_PER_FILE = 500;
/** Continue-as-new well below Temporal's 10,240-event warning. */
const MAX_HISTORY_EVENTS = 5_000;
/** A run carried over from an earlier history that has not reported this long after its deadline is lost. */
const REPORT_GRACE_MS = 60 * 60 * 1000;
/**
 * Runs carried over from an earlier history are looked up (their outcome is in their
 * configuration) this soon, then less often while none of them ends (up to a minute).
 */
const CARRIED_FIRST_CHECK_MS = 2_000;
const CARRIED_MAX_CHECK_MS = 60_000;

const store = proxyActivities<Activities>(storeOptions);

/** Set by Schedules on the runs they start (backfills included): the time the run was due. */
const scheduledStartTime = defineSearchAttributeKey(
  'TemporalScheduledStartTime',
  SearchAttributeType.DATETIME,
);

export interface DailySyncInput {
  /** YYYY-MM-DD. Default: the day the schedule planned this run for (or today, UTC). */
  runDate?: string;
  /** Configuration runs at once (1-1,000). Default 50. */
  concurrency?: number;
  /** Configurations listed per page (1-1,000). Default 500. */
  pageSize?: number;
  /** Each configuration run's deadline. Default 20 hours. */
  deadlineMs?: number;
  /** Continue-as-new past this many history events (20-10,000; default 5,000). For tests. */
  maxHistoryEvents?: number;
  /** Outcomes per file (1-500; default 500). For tests. */
  outcomesPerFile?: number;
  /** Carried across continue-as-new. */
  resume?: DailyState;
}

type Outcome = ConfigurationOutcome['outcome'];

export interface DailySummary {
  runDate: string;
  /** Configurations seen, whatever their outcome. */
  configurations: number;
  outcomes: Partial<Record<Outcome, number>>;
  /** Where each configuration's outcome is (blob store): `<folder>outcomes-NNNNN.jsonl`, and summary.json. */
  folder: string;
  outcomeFiles: number;
  startedAt: string;
  finishedAt: string;
}

export interface DailyState {
  runDate: string;
  startedAt: string;
  /** The last configuration key listed; absent before the first page. */
  cursor?: string;
  exhausted: boolean;
  /** Listed, active, not started yet (at most one page). */
  queue: Array<{ configurationId: string; esp: string }>;
  /** Started and not reported yet: configuration id -> start time (epoch ms). */
  inFlight: Record<string, number>;
  /** Of inFlight: started by an earlier history (their results do not reach this one). */
  carried?: string[];
  /** Outcomes not written to a file yet. */
  pending?: ConfigurationOutcome[];
  outcomes: Partial<Record<Outcome, number>>;
  outcomeFiles: number;
}

export const dailyProgressQuery = defineQuery<{
  runDate: string;
  configurations: number;
  inFlight: number;
  listedAll: boolean;
  outcomes: Partial<Record<Outcome, number>>;
}>('progress');

/**
 * The daily run the `espresso-daily` schedule starts: one configurationSyncWorkflow per active
 * configuration, up to `concurrency` at once, listed a page at a time. Outcomes go to the blob
 * store, counts to the result. Continues-as-new (carrying the cursor, the runs in flight and the
 * counts) well before its history gets long, so the fleet's size never reaches a Temporal limit.
 * One configuration failing never stops the others.
 */
export async function dailySyncWorkflow(
  input: DailySyncInput = {},
): Promise<DailySummary | DailySyncOutcome[]> {
  // One marker per history in runs of this version: the latest, which implies the one before it.
  const boundedFiles = patched(BOUNDED_OUTCOME_FILES_PATCH);
  if (!boundedFiles && !patched(PAGED_DAILY_PATCH)) return dailySyncV1(input);
  const concurrency = bounded(input.concurrency, DEFAULT_DAILY_CONCURRENCY, 'concurrency');
  const pageSize = bounded(input.pageSize, DEFAULT_PAGE_SIZE, 'pageSize');
  const deadlineMs = input.deadlineMs ?? DEFAULT_DEADLINE_MS;
  const maxHistoryEvents = bounded(
    input.maxHistoryEvents,
    MAX_HISTORY_EVENTS,
    'maxHistoryEvents',
    20,
    10_000,
  );
  const perFile = boundedFiles
    ? bounded(input.outcomesPerFile, OUTCOMES_PER_FILE, 'outcomesPerFile', 1, OUTCOMES_PER_FILE)
    : OUTCOMES_PER_FILE;
  const s: DailyState = input.resume ?? {
    runDate: calendarDay(input.runDate) ?? dueDate(),
    startedAt: new Date().toISOString(),
    exhausted: false,
    queue: [],
    inFlight: {},
    outcomes: {},
    outcomeFiles: 0,
  };
  const folder = `daily/${s.runDate}/${workflowInfo().firstExecutionRunId}/`;
  let buffered: ConfigurationOutcome[] = s.pending ?? [];
  let inFlight = Object.keys(s.inFlight).length;

  const record = (o: ConfigurationOutcome) => {
    s.outcomes[o.outcome] = (s.outcomes[o.outcome] ?? 0) + 1;
    buffered.push(o);
  };
  // Runs started in this history report by their result; runs carried over from an earlier one are
  // looked up now and then in their configuration's document (where every run records how it ended).
  const carried = new Set(s.carried ?? []);
  let carriedCheck = CARRIED_FIRST_CHECK_MS;
  const done = (o: ConfigurationOutcome) => {
    if (!(o.configurationId in s.inFlight)) return;
    delete s.inFlight[o.configurationId];
    carried.delete(o.configurationId);
    inFlight--;
    record(o);
  };
  setHandler(dailyProgressQuery, () => ({
    runDate: s.runDate,
    configurations: Object.values(s.outcomes).reduce((a, b) => a + (b ?? 0), 0) + inFlight,
    inFlight,
    listedAll: s.exhausted && s.queue.length === 0,
    outcomes: s.outcomes,
  }));

  const start = (next: { configurationId: string; esp: string }) => {
    const { configurationId, esp } = next;
    s.inFlight[configurationId] = Date.now();
    inFlight++;
    return startChild(configurationSyncWorkflow, {
      workflowId: workflowIds.configurationSync(configurationId, s.runDate),
      // A run that completed today is not redone; a failed one is retried by a rerun.
      workflowIdReusePolicy: WorkflowIdReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
      // The configuration's run finishes even when this daily run continues as new or ends.
      parentClosePolicy: ParentClosePolicy.ABANDON,
      staticSummary: readable(`Daily sync of ${configurationId} (${esp}) for ${s.runDate}`),
      args: [
        {
          configurationId,
          runDate: s.runDate,
          mode: 'incremental',
          deadlineMs,
        },
      ],
    }).then(
      (child) =>
        void child.result().then(
          (r) =>
            done({
              configurationId,
              esp,
              outcome: r.status,
              updated: r.updated,
              rejected: r.rejected,
              reason: r.reason,
            }),
          (err) =>
            done({ configurationId, esp, outcome: endedHow(err), reason: rootMessage(err).slice(0, 300) }),
        ),
      (err) =>
        done(
          err instanceof WorkflowExecutionAlreadyStartedError
            ? { configurationId, esp, outcome: 'already_ran' }
            : { configurationId, esp, outcome: 'failed', reason: rootMessage(err).slice(0, 300) },
        ),
    );
  };

  /** Writes the outcomes waiting: all of them, or (`whole`) only as many whole files as they fill. */
  const flush = async (whole = false) => {
    if (!boundedFiles) {
      if (!buffered.length) return;
      const outcomes = buffered;
      buffered = [];
      return void (await store.writeDailyOutcomes({ folder, file: ++s.outcomeFiles, outcomes }));
    }
    // Outcomes that arrive while a file is written wait for the next one.
    while (buffered.length >= (whole ? perFile : 1)) {
      const outcomes = buffered.splice(0, perFile);
      await store.writeDailyOutcomes({ folder, file: ++s.outcomeFiles, outcomes });
    }
  };

  const historyLong = () =>
    workflowInfo().continueAsNewSuggested || workflowInfo().historyLength > maxHistoryEvents;

  for (;;) {
    while (inFlight < concurrency && (s.queue.length > 0 || !s.exhausted) && !historyLong()) {
      if (s.queue.length === 0) {
        const page = await store.listConfigurationsPage({ after: s.cursor, limit: pageSize });
        s.cursor = page.nextCursor ?? s.cursor;
        s.exhausted = !page.nextCursor;
        for (const entry of page.entries) {
          if (entry.unreadable !== undefined) {
            record({
              configurationId: entry.configurationId,
              outcome: 'unreadable',
              reason: entry.unreadable,
            });
          } else if (entry.status !== 'active') {
            record({
              configurationId: entry.configurationId,
              esp: entry.esp,
              outcome: 'skipped',
              reason: `configuration is ${entry.status}`,
            });
          } else s.queue.push({ configurationId: entry.configurationId, esp: entry.esp! });
        }
        // Pages of configurations it does not start may follow one another for long.
        if (boundedFiles && buffered.length >= perFile) await flush(true);
        continue;
      }
      // Started together: one workflow task starts the whole batch.
      await Promise.all(s.queue.splice(0, concurrency - inFlight).map(start));
    }
    if (buffered.length >= perFile) await flush(true);
    if (s.exhausted && s.queue.length === 0 && inFlight === 0) break;
    if (historyLong()) {
      await flush();
      // Outcomes that arrived while the file was written go along, not lost.
      await continueAsNew<typeof dailySyncWorkflow>({
        ...input,
        resume: { ...s, carried: Object.keys(s.inFlight), pending: buffered },
      });
    }
    const ready = () =>
      (inFlight < concurrency && (s.queue.length > 0 || !s.exhausted)) ||
      buffered.length >= perFile ||
      (s.exhausted && s.queue.length === 0 && inFlight === 0);
    if (carried.size === 0) await condition(ready);
    else if (!(await condition(ready, carriedCheck))) {
      const ended = await store.runOutcomes({ runDate: s.runDate, configurationIds: [...carried] });
      for (const o of ended) done(o);
      carriedCheck = ended.length ? CARRIED_FIRST_CHECK_MS : Math.min(carriedCheck * 2, CARRIED_MAX_CHECK_MS);
    }
    for (const [configurationId, startedAt] of Object.entries(s.inFlight)) {
      if (Date.now() >= startedAt + deadlineMs + REPORT_GRACE_MS) {
        done({ configurationId, outcome: 'timed_out', reason: 'the run did not report within its deadline' });
      }
    }
  }
  await flush();
  const summary: DailySummary = {
    runDate: s.runDate,
    configurations: Object.values(s.outcomes).reduce((a, b) => a + (b ?? 0), 0),
    outcomes: s.outcomes,
    folder,
    outcomeFiles: s.outcomeFiles,
    startedAt: s.startedAt,
    finishedAt: new Date().toISOString(),
  };
  await store.writeDailySummary(summary);
  return summary;
}

/** How a run that threw ended: past its deadline, cancelled, or failed. */
function endedHow(err: unknown): ConfigurationOutcome['outcome'] {
  if (failureType(err) === failureTypes.runDeadline) return 'timed_out';
  return isCancellation(err) ? 'cancelled' : 'failed';
}

function dueDate(): string {
  const due = workflowInfo().typedSearchAttributes.get(scheduledStartTime) ?? new Date();
  return due.toISOString().slice(0, 10);
}

function bounded(value: number | undefined, fallback: number, name: string, min = 1, max = 1_000): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < min || value > max) {
    throw ApplicationFailure.nonRetryable(
      `invalid input: ${name} must be an integer from ${min} to ${max}`,
      'InvalidInput',
    );
  }
  return value;
}

function calendarDay(d: string | undefined): string | undefined {
  if (d === undefined) return undefined;
  const t = /^\d{4}-\d{2}-\d{2}$/.test(d) ? Date.parse(`${d}T00:00:00Z`) : NaN;
  if (Number.isNaN(t) || new Date(t).toISOString().slice(0, 10) !== d) {
    throw ApplicationFailure.nonRetryable(
      `invalid input: runDate ${d} is not a day (YYYY-MM-DD)`,
      'InvalidInput',
    );
  }
  return d;
}
