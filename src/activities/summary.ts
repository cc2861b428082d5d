import type { ActivityDeps } from '.';
import { changeWithAlert } from '../alerts';
import type { ListMode, MaintenanceReport } from '../processors/types';
import { runFiles } from '../runs/files';
import type { ConfigurationOutcome } from '../workflows/signals';
import { mapFailures } from './failures';

/** summary.json: what a run did, in counts. What the admin page and operators read. */
export interface RunSummary {
  configurationId: string;
  esp: string;
  runDate: string;
  /** The run's folder under runs/<configurationId>/: the run date, or <runDate>_<runId> for manual runs. */
  run: string;
  mode: ListMode;
  dryRun: boolean;
  /**
   * completed; skipped (the configuration is not active); busy (another run was writing it);
   * needs_reauth; failed; timed_out (passed its deadline); cancelled.
   */
  status: 'completed' | 'needs_reauth' | 'skipped' | 'busy' | 'failed' | 'timed_out' | 'cancelled';
  reason?: string;
  workflowId: string;
  startedAt: string;
  finishedAt: string;
  durationsMs: { maintenance: number; export: number; dispatch: number; total: number };
  maintenance?: MaintenanceReport;
  contacts: { exported: number; alreadySet: number; updated: number; rejected: number };
  /** Of alreadySet: values in a format espresso would not write itself (kept all the same). */
  foreignValues?: number;
  rejectedByKind: Record<string, number>;
  chunks: number;
}

/** Run statuses that mean the configuration's runs are not working. */
const FAILING: ReadonlySet<RunSummary['status']> = new Set(['failed', 'timed_out', 'cancelled']);

export function createSummaryActivities(deps: ActivityDeps) {
  const { blobs, configurations } = deps.stores;
  const writeSummary = async (summary: RunSummary): Promise<void> => {
    const body = JSON.stringify(summary, null, 2) + '\n';
    const options = { contentType: 'application/json' };
    await blobs.put(runFiles.summary(summary.configurationId, summary.run), body, options);
    await blobs.put(runFiles.latestSummary(summary.configurationId), body, options);
  };
  return {
    /** Legacy runs: the summary files only. */
    writeSummary,

    /**
     * A run's summary files, and its outcome in the configuration's document (the admin page reads
     * it there). The first failing run after working ones alerts, and so does the first completed
     * one after failing ones: one alert per change, saved with the change.
     */
    async recordRun(summary: RunSummary): Promise<void> {
      return mapFailures(async () => {
        await writeSummary(summary);
        const health = summary.dryRun
          ? undefined
          : summary.status === 'completed'
            ? 'ok'
            : FAILING.has(summary.status)
              ? 'failing'
              : undefined;
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
            },
            ...(health ? { runHealth: health } : {}),
          },
          alert:
            health === 'failing' && c.runHealth !== 'failing'
              ? {
                  status: 'run_failed',
                  message:
                    `run ${summary.run} ${summary.status.replace('_', ' ')}: ${summary.reason ?? ''}`.slice(
                      0,
                      1000,
                    ),
                }
              : health === 'ok' && c.runHealth === 'failing'
                ? { status: 'run_recovered', message: `run ${summary.run} completed; runs work again` }
                : undefined,
        }));
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
