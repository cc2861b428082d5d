import type { ActivityDeps } from '.';
import type { ListMode, MaintenanceReport } from '../processors/types';
import { runFiles } from '../runs/files';

/** summary.json: what a run did, in counts. What the admin page and operators read. */
export interface RunSummary {
  configurationId: string;
  esp: string;
  runDate: string;
  /** The run's folder under runs/<configurationId>/: the run date, or <runDate>_<runId> for manual runs. */
  run: string;
  mode: ListMode;
  dryRun: boolean;
  status: 'completed' | 'needs_reauth' | 'skipped' | 'failed';
  reason?: string;
  workflowId: string;
  startedAt: string;
  finishedAt: string;
  durationsMs: { maintenance: number; export: number; dispatch: number; total: number };
  maintenance?: MaintenanceReport;
  contacts: { exported: number; alreadySet: number; updated: number; rejected: number };
  rejectedByKind: Record<string, number>;
  chunks: number;
}

export function createSummaryActivities(deps: ActivityDeps) {
  return {
    async writeSummary(summary: RunSummary): Promise<void> {
      const body = JSON.stringify(summary, null, 2) + '\n';
      const options = { contentType: 'application/json' };
      await deps.stores.blobs.put(runFiles.summary(summary.configurationId, summary.run), body, options);
      await deps.stores.blobs.put(runFiles.latestSummary(summary.configurationId), body, options);
    },
  };
}
