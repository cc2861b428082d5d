import type { Client } from '@temporalio/client';
import type { ConfigurationSyncInput } from '../workflows/configuration-sync';
import { TASK_QUEUE, workflowIds } from './constants';

/**
 * Starts a configuration run outside the schedule (first run after connecting, `espresso sync`,
 * admin "run now", redispatch). Its id says what started it: sync/<id>/<date>/<kind>-<hhmmss>-<rand>.
 */
export async function startConfigurationRun(
  client: Client,
  input: ConfigurationSyncInput,
  kind: 'first-run' | 'manual' | 'dry-run' | 'redispatch',
  now = new Date(),
) {
  // hhmmss plus a short random suffix: two runs started in the same second still differ.
  const stamp = `${now.toISOString().slice(11, 19).replace(/:/g, '')}-${Math.random().toString(36).slice(2, 6).padEnd(4, '0')}`;
  // The redispatch of a run keeps that run's folder (input.runId); other kinds get their own.
  const runId = kind === 'redispatch' ? input.runId : `${kind}-${stamp}`;
  const workflowId = workflowIds.manualSync(input.configurationId, input.runDate, `${kind}-${stamp}`);
  return client.workflow.start('configurationSyncWorkflow', {
    taskQueue: TASK_QUEUE,
    workflowId,
    staticSummary: `${kind} ${input.mode} sync of ${input.configurationId} for ${input.runDate}`,
    args: [{ ...input, runId }],
  });
}

export function today(now = new Date()): string {
  return now.toISOString().slice(0, 10);
}
