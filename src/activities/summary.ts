import type { ActivityDeps } from './deps';
import { changeWithAlert, type Alert } from '../alerts';
import { DEFAULT_ALERT_REJECTED_PERCENT } from '../config';
import type { Configuration } from '../storage';
import { accountLockKey, AccountLocks, type LockOwner } from '../runs/account-lock';
import { runFiles } from '../runs/files';
import { recordHistory } from '../runs/history';
import { runNotes } from '../runs/report';
import type { RunSummary } from '../runs/summaries';
import { CorruptDataError, NotFoundError } from '../storage';
import { workflowIds } from '../temporal/constants';
import type { ConfigurationOutcome } from '../workflows/signals';
import { mapFailures } from './failures';

/** Run statuses that mean the configuration's runs are not working. */
const FAILING: ReadonlySet<RunSummary['status']> = new Set(['failed', 'timed_out', 'cancelled']);

type Decided = Pick<Alert, 'status' | 'message'>;

/** The run-failed alert, or its recovery, when the run changes whether runs work. */
function healthAlert(summary: RunSummary, health: 'ok' | 'failing' | undefined, c: Configuration) {
  if (health === 'failing' && c.runHealth !== 'failing')
    return {
      status: 'run_failed',
      message: `run ${summary.run} ${summary.status.replace('_', ' ')}: ${summary.reason ?? ''}`.slice(
        0,
        1000,
      ),
    } satisfies Decided;
  if (health === 'ok' && c.runHealth === 'failing')
    return {
      status: 'run_recovered',
      message: `run ${summary.run} completed; runs work again`,
    } satisfies Decided;
  return undefined;
}

/**
 * Whether a run rejected too much: the rejected share of the contacts it wrote or had rejected,
 * above `percent`. Only completed runs that are not dry runs and wrote anything say.
 */
function rejectionsOf(summary: RunSummary, percent: number) {
  const { updated, rejected } = summary.contacts;
  const written = updated + rejected;
  if (summary.dryRun || summary.status !== 'completed' || written === 0) return undefined;
  const share = `${rejected} of ${written} contacts rejected (${Math.round((rejected * 1000) / written) / 10}%)`;
  const high = rejected * 100 > percent * written;
  return { state: high ? ('high' as const) : ('ok' as const), share };
}

/** The rejections alert, or its recovery, when the run's rejected share crosses the threshold. */
function rejectionsAlert(
  summary: RunSummary,
  rejections: ReturnType<typeof rejectionsOf>,
  percent: number,
  c: Configuration,
) {
  if (rejections?.state === 'high' && c.rejections !== 'high') {
    const kinds = Object.entries(summary.rejectedByKind)
      .sort(([, a], [, b]) => b - a)
      .slice(0, 3)
      .map(([kind, n]) => `${kind} ${n}`)
      .join(', ');
    return {
      status: 'rejections_high',
      message: `run ${summary.run}: ${rejections.share}, above ${percent}%${kinds ? `: ${kinds}` : ''}`.slice(
        0,
        1000,
      ),
    } satisfies Decided;
  }
  if (rejections?.state === 'ok' && c.rejections === 'high')
    return {
      status: 'rejections_recovered',
      message: `run ${summary.run}: ${rejections.share}, back under ${percent}%`,
    } satisfies Decided;
  return undefined;
}

export function createSummaryActivities(deps: ActivityDeps) {
  const { blobs, configurations } = deps.stores;
  const percent = deps.alertRejectedPercent ?? DEFAULT_ALERT_REJECTED_PERCENT;
  const writeSummary = async (summary: RunSummary): Promise<void> => {
    const body = JSON.stringify(summary, null, 2) + '\n';
    const options = { contentType: 'application/json' };
    await settled([
      blobs.put(runFiles.summary(summary.configurationId, summary.run), body, options),
      blobs.put(runFiles.latestSummary(summary.configurationId), body, options),
      recordHistory(blobs, summary, body),
    ]);
  };
  /** The run's outcome in its configuration's document, and its alerts. */
  const recordOutcome = async (summary: RunSummary): Promise<void> => {
    const notes = runNotes(summary);
    const health = summary.dryRun
      ? undefined
      : summary.status === 'completed'
        ? 'ok'
        : FAILING.has(summary.status)
          ? 'failing'
          : undefined;
    const rejections = rejectionsOf(summary, percent);
    await changeWithAlert(configurations, deps.alerts, summary.configurationId, (c) => ({
      change: {
        lastRun: {
          status: summary.status,
          run: summary.run,
          workflowId: summary.workflowId.slice(0, 300),
          finishedAt: summary.finishedAt,
          dryRun: summary.dryRun,
          updated: summary.contacts.updated,
          rejected: summary.contacts.rejected,
          ...(summary.reason ? { reason: summary.reason.slice(0, 500) } : {}),
          ...(notes.length ? { notes } : {}),
        },
        ...(health ? { runHealth: health } : {}),
        ...(rejections ? { rejections: rejections.state } : {}),
      },
      alert: [healthAlert(summary, health, c), rejectionsAlert(summary, rejections, percent, c)].filter(
        (a) => a !== undefined,
      ),
    }));
  };
  /** The account given back, by the key the run took it under (runs of earlier versions: its configuration's). */
  const giveBack = async (summary: RunSummary, lock: LockOwner, key: string | undefined): Promise<void> => {
    if (key === undefined) {
      const configuration = await configurations.get(summary.configurationId);
      key = accountLockKey(configuration.esp, configuration.espAccountId);
    }
    await new AccountLocks(blobs).release(key, lock);
  };
  return {
    /** Legacy runs: the summary files only. */
    writeSummary,

    /**
     * A run's summary files, its outcome in the configuration's document (the admin page reads it
     * there) and its ESP account given back, all at once: the run's ESP requests are over, and the
     * run waiting for the account starts that much sooner (a retry does them all again; giving back
     * an account the run no longer holds does nothing). The first failing run after working ones
     * alerts, and so does the first completed one after failing ones; likewise the first run whose
     * rejected share passes the threshold, and the first one back under it: one alert per change,
     * saved with the change.
     */
    async recordRun(
      summary: RunSummary,
      options: { lock?: LockOwner; lockKey?: string; files?: boolean } = {},
    ): Promise<void> {
      const { lock, lockKey, files = true } = options;
      return mapFailures(async () => {
        await settled([
          files ? writeSummary(summary) : undefined,
          recordOutcome(summary),
          lock ? giveBack(summary, lock, lockKey) : undefined,
        ]);
      });
    },

    /**
     * The daily run's check on runs it started before it continued as new: the outcome of each that
     * has ended (from its configuration's document), by configuration id.
     */
    async runOutcomes(input: {
      runDate: string;
      configurationIds: string[];
    }): Promise<ConfigurationOutcome[]> {
      return mapFailures(async () => {
        const ended: ConfigurationOutcome[] = [];
        for (const configurationId of input.configurationIds) {
          let c;
          try {
            c = await configurations.get(configurationId);
          } catch (err) {
            if (err instanceof NotFoundError || err instanceof CorruptDataError) {
              ended.push({
                configurationId,
                outcome: 'unreadable',
                reason: (err as Error).message.slice(0, 300),
              });
              continue;
            }
            throw err;
          }
          const last = c.lastRun;
          if (last && last.workflowId === workflowIds.configurationSync(configurationId, input.runDate)) {
            ended.push({
              configurationId,
              esp: c.esp,
              outcome: last.status as ConfigurationOutcome['outcome'],
              updated: last.updated,
              rejected: last.rejected,
              ...(last.reason ? { reason: last.reason } : {}),
            });
          }
        }
        return ended;
      });
    },

    /** One file of a daily run's outcomes: a line per configuration (ids, outcome, counts, reason). */
    async writeDailyOutcomes(input: {
      folder: string;
      file: number;
      outcomes: ConfigurationOutcome[];
    }): Promise<void> {
      const key = `${input.folder}outcomes-${String(input.file).padStart(5, '0')}.jsonl`;
      await blobs.put(key, input.outcomes.map((o) => JSON.stringify(o)).join('\n') + '\n', {
        contentType: 'application/x-ndjson',
      });
    },

    async writeDailySummary(summary: { folder: string }): Promise<void> {
      await blobs.put(`${summary.folder}summary.json`, JSON.stringify(summary, null, 2) + '\n', {
        contentType: 'application/json',
      });
    },
  };
}

/** Waits for every write, then fails with the first that failed (none is left running). */
async function settled(writes: Array<Promise<unknown> | undefined>): Promise<void> {
  const failed = (await Promise.allSettled(writes)).find((r) => r.status === 'rejected');
  if (failed) throw (failed as PromiseRejectedResult).reason;
}
