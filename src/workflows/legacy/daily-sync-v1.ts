// The daily run of workers before the paged fan-out, kept so that daily runs those workers started
// still replay and complete on new workers. Do not change the commands it issues.
import {
  defineSearchAttributeKey,
  SearchAttributeType,
  WorkflowExecutionAlreadyStartedError,
  WorkflowIdReusePolicy,
} from '@temporalio/common';
import { ParentClosePolicy, proxyActivities, startChild, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../../activities';
import { workflowIds } from '../../temporal/constants';
import { configurationSyncWorkflow, type ConfigurationSyncResult } from '../configuration-sync';
import { rootMessage } from '../failures';
import { espCallRetry } from '../retry-policies';

const { listActiveConfigurations } = proxyActivities<Activities>({
  startToCloseTimeout: '1 minute',
  retry: espCallRetry,
});

/** Set by Schedules on the runs they start (backfills included): the time the run was due. */
const scheduledStartTime = defineSearchAttributeKey(
  'TemporalScheduledStartTime',
  SearchAttributeType.DATETIME,
);

export interface DailySyncOutcome {
  configurationId: string;
  esp: string;
  outcome: ConfigurationSyncResult['status'] | 'failed' | 'already_ran';
  updated?: number;
  rejected?: number;
  error?: string;
}

/**
 * dailySyncWorkflow as it was before the paged fan-out: the whole fleet in one activity result and
 * one history. Daily runs started by earlier versions replay here (no `paged-daily` marker); new
 * runs never take this path. Frozen: a change here breaks the replay of those runs.
 */
export async function dailySyncV1(
  input: { runDate?: string; concurrency?: number } = {},
): Promise<DailySyncOutcome[]> {
  const due = workflowInfo().typedSearchAttributes.get(scheduledStartTime) ?? new Date();
  const runDate = input.runDate ?? due.toISOString().slice(0, 10);
  const concurrency = Math.max(1, input.concurrency ?? 4);
  const configurations = await listActiveConfigurations();

  const outcomes: DailySyncOutcome[] = [];
  let next = 0;
  const worker = async () => {
    while (next < configurations.length) {
      const { configurationId, esp } = configurations[next++]!;
      outcomes.push(await runOne(configurationId, esp, runDate));
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, configurations.length) }, worker));
  return outcomes.sort((a, b) => a.configurationId.localeCompare(b.configurationId));
}

async function runOne(configurationId: string, esp: string, runDate: string): Promise<DailySyncOutcome> {
  try {
    const child = await startChild(configurationSyncWorkflow, {
      workflowId: workflowIds.configurationSync(configurationId, runDate),
      // A run that completed today is not redone; a failed one is retried by a rerun.
      workflowIdReusePolicy: WorkflowIdReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
      // The configuration's run finishes even if this parent is terminated.
      parentClosePolicy: ParentClosePolicy.ABANDON,
      staticSummary: `Daily sync of ${configurationId} (${esp}) for ${runDate}`,
      args: [{ configurationId, runDate, mode: 'incremental' }],
    });
    const result = await child.result();
    return {
      configurationId,
      esp,
      outcome: result.status,
      updated: result.updated,
      rejected: result.rejected,
    };
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError)
      return { configurationId, esp, outcome: 'already_ran' };
    return { configurationId, esp, outcome: 'failed', error: rootMessage(err).slice(0, 300) };
  }
}
