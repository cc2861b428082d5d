import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import { accountLockKey, AccountLocks, LOCK_TTL_MS, type LockOwner } from '../runs/account-lock';
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
    /** No worker has run its activities for LOCK_TTL_MS (its account lock expired). */
    readonly stalled = false,
  ) {
    super(
      stalled
        ? `${configurationId} is being written by run ${holder}, which no worker has run for over ${LOCK_TTL_MS / 60_000} minutes (its account lock expired): start the workers (espresso doctor checks them), or terminate the run in the Temporal Web UI to free the configuration`
        : `${configurationId} is being written by run ${holder}; wait for it to finish, or cancel it first`,
    );
  }
}

/**
 * The run writing a configuration now, or undefined. A dry run, or a run of another configuration
 * of the same ESP account, is not one. A run whose lock expired (no worker ran its activities for
 * LOCK_TTL_MS: a deploy, an outage) still is while Temporal says it runs (`stalled`): it takes the
 * account again as its activities start.
 */
export async function runningWriter(
  client: Client,
  stores: Stores,
  configurationId: string,
): Promise<{ workflowId: string; stalled: boolean } | undefined> {
  const configuration = await stores.configurations.get(configurationId);
  const held = await new AccountLocks(stores.blobs).holder(
    accountLockKey(configuration.esp, configuration.espAccountId),
  );
  if (!held || held.owner.configurationId !== configurationId || held.owner.dryRun) return undefined;
  if (held.expired && !(await stillRuns(client, held.owner))) return undefined;
  return { workflowId: held.owner.workflowId, stalled: held.expired };
}

/**
 * Whether a lock's run is open: the latest run of its workflow id (continue-as-new keeps the id),
 * of the chain that began with its first run id (a new chain may reuse the id once it has ended).
 */
export async function stillRuns(
  client: Client,
  run: Pick<LockOwner, 'workflowId' | 'runId'>,
): Promise<boolean> {
  try {
    const described = await client.workflow.getHandle(run.workflowId).describe();
    const firstRunId = described.raw.workflowExecutionInfo?.firstRunId;
    return described.closeTime === undefined && (!firstRunId || firstRunId === run.runId);
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
    const writer = await runningWriter(client, stores, input.configurationId);
    if (writer) throw new RunInProgressError(input.configurationId, writer.workflowId, writer.stalled);
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
