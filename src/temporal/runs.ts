import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import { accountLockKey, AccountLocks } from '../runs/account-lock';
import { readable } from '../codec/readable-text';
import type { Stores } from '../storage';
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
 * The run writing a configuration now (its workflow id), or undefined. A dry run, or a run of
 * another configuration of the same ESP account, is not one. A run whose lock expired (no worker
 * ran its activities for LOCK_TTL_MS: a deploy, an outage) still is while Temporal says it runs:
 * it takes the account again as its activities start.
 */
export async function runningWriter(
  client: Client,
  stores: Stores,
  configurationId: string,
): Promise<string | undefined> {
  const configuration = await stores.configurations.get(configurationId);
  const held = await new AccountLocks(stores.blobs).holder(
    accountLockKey(configuration.esp, configuration.espAccountId),
  );
  if (!held || held.owner.configurationId !== configurationId || held.owner.dryRun) return undefined;
  if (held.expired && !(await stillRuns(client, held.owner.workflowId))) return undefined;
  return held.owner.workflowId;
}

/** Whether the workflow's latest run (continue-as-new keeps its id) is running. */
export async function stillRuns(client: Client, workflowId: string): Promise<boolean> {
  try {
    return (await client.workflow.getHandle(workflowId).describe()).status.name === 'RUNNING';
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return false;
    throw err;
  }
}

/**
 * Starts a configuration run outside the schedule (first run after connecting, `espresso sync`,
 * admin "run now", redispatch). Its id says what started it: sync/<id>/<date>/<kind>-<hhmmss>-<rand>.
 * A run that would write is refused (RunInProgressError) while another writes the configuration;
 * the run itself checks again (it takes the account's lock), so two starts racing still leave one
 * writer: the second ends `busy`.
 */
export async function startConfigurationRun(
  client: Client,
  stores: Stores,
  input: ConfigurationSyncInput,
  kind: 'first-run' | 'manual' | 'dry-run' | 'redispatch',
  options: { taskQueue?: string; now?: Date } = {},
) {
  const now = options.now ?? new Date();
  if (!input.dryRun) {
    const holder = await runningWriter(client, stores, input.configurationId);
    if (holder) throw new RunInProgressError(input.configurationId, holder);
  }
  // hhmmss plus a short random suffix: two runs started in the same second still differ.
  const stamp = `${now.toISOString().slice(11, 19).replace(/:/g, '')}-${Math.random().toString(36).slice(2, 6).padEnd(4, '0')}`;
  const folderSuffix = `${kind}-${stamp}`;
  const workflowId = workflowIds.manualSync(input.configurationId, input.runDate, folderSuffix);
  return client.workflow.start('configurationSyncWorkflow', {
    taskQueue: options.taskQueue ?? TASK_QUEUE,
    workflowId,
    staticSummary: readable(`${kind} ${input.mode} sync of ${input.configurationId} for ${input.runDate}`),
    args: [{ ...input, folderSuffix }],
  });
}

export function today(now = new Date()): string {
  return now.toISOString().slice(0, 10);
}
