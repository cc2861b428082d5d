import type { Client } from '@temporalio/client';
import { WorkflowNotFoundError } from '@temporalio/common';
import type { ConfigurationSyncInput } from '../workflows/configuration-sync';
import { TASK_QUEUE, workflowIds } from './constants';

/** A run is writing the configuration already: a second one would be refused (its message names the first). */
export class RunInProgressError extends Error {
  override name = 'RunInProgressError';
  constructor(
    readonly configurationId: string,
    readonly holder: string,
  ) {
    super(`${configurationId} is being written by run ${holder}; wait for it to finish, or cancel it first`);
  }
}

/**
 * The run holding a configuration's writer (its workflow id and since when), or undefined when
 * none runs. A dry run holds no writer.
 */
export async function runningWriter(client: Client, configurationId: string): Promise<string | undefined> {
  try {
    const d = await client.workflow.getHandle(workflowIds.writer(configurationId)).describe();
    if (d.status.name !== 'RUNNING') return undefined;
    return `${d.parentExecution?.workflowId ?? d.workflowId} (writing since ${d.startTime.toISOString()})`;
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return undefined;
    throw err;
  }
}

/**
 * Starts a configuration run outside the schedule (first run after connecting, `espresso sync`,
 * admin "run now", redispatch). Its id says what started it: sync/<id>/<date>/<kind>-<hhmmss>-<rand>.
 * A run that would write is refused (RunInProgressError) while another writes the configuration;
 * the run itself checks again, so two starts racing still leave one writer.
 */
export async function startConfigurationRun(
  client: Client,
  input: ConfigurationSyncInput,
  kind: 'first-run' | 'manual' | 'dry-run' | 'redispatch',
  options: { taskQueue?: string; now?: Date } = {},
) {
  const now = options.now ?? new Date();
  if (!input.dryRun) {
    const holder = await runningWriter(client, input.configurationId);
    if (holder) throw new RunInProgressError(input.configurationId, holder);
  }
  // hhmmss plus a short random suffix: two runs started in the same second still differ.
  const stamp = `${now.toISOString().slice(11, 19).replace(/:/g, '')}-${Math.random().toString(36).slice(2, 6).padEnd(4, '0')}`;
  const runId = `${kind}-${stamp}`;
  const workflowId = workflowIds.manualSync(input.configurationId, input.runDate, runId);
  return client.workflow.start('configurationSyncWorkflow', {
    taskQueue: options.taskQueue ?? TASK_QUEUE,
    workflowId,
    staticSummary: `${kind} ${input.mode} sync of ${input.configurationId} for ${input.runDate}`,
    args: [{ ...input, runId }],
  });
}

export function today(now = new Date()): string {
  return now.toISOString().slice(0, 10);
}
