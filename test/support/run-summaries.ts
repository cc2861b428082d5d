// Run summaries as a finished run writes them, for tests of the pages that read them.
import type { RunSummary } from '../../src/runs/summaries';

/** A completed run: 3 contacts exported, 2 updated, 1 rejected (`contact_suppressed`). */
export function summaryFor(
  configurationId: string,
  run: string,
  startedAt: string,
  extra: Partial<RunSummary> = {},
): RunSummary {
  return {
    configurationId,
    esp: 'sandbox',
    runDate: run.slice(0, 10),
    run,
    mode: 'incremental',
    dryRun: false,
    status: 'completed',
    workflowId: `sync/${configurationId}/${run}`,
    startedAt,
    finishedAt: startedAt,
    durationsMs: { maintenance: 10, export: 20, dispatch: 30, total: 60 },
    contacts: { exported: 3, alreadySet: 0, updated: 2, rejected: 1 },
    rejectedByKind: { contact_suppressed: 1 },
    chunks: 1,
    ...extra,
  };
}
