import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { dataConverter, formatPayloadKeys, parsePayloadKeys } from '../../src/codec';
import type { Stores } from '../../src/storage';
import { allSearchAttributes, TASK_QUEUE } from '../../src/temporal/constants';
import { resolveTemporalCli } from '../../src/tools';

let env: Promise<TestWorkflowEnvironment> | undefined;

/**
 * The tests' payload key ring (test-only, fixed so recorded histories stay decryptable): the shared
 * client, test workers, spawned processes and the replay test use it.
 */
export const testPayloadKeys = parsePayloadKeys(
  `test:${Buffer.alloc(32, 'espresso-test-key').toString('base64')}`,
);
/** For the environment of spawned espresso processes (ESPRESSO_PAYLOAD_KEYS). */
export const testPayloadKeysEnv = formatPayloadKeys(testPayloadKeys);

/** One real Temporal dev server for the whole run, started on first use (existing-path binary). */
export function temporalEnv(): Promise<TestWorkflowEnvironment> {
  env ??= (async () => {
    const cli = resolveTemporalCli();
    return TestWorkflowEnvironment.createLocal({
      client: { dataConverter: dataConverter(testPayloadKeys) },
      server: {
        executable:
          cli.source === 'sdk-download'
            ? { type: 'cached-download', version: cli.version }
            : { type: 'existing-path', path: cli.path },
        ip: '127.0.0.1',
        searchAttributes: allSearchAttributes,
        extraArgs: ['--log-level', 'error'],
      },
    });
  })();
  return env;
}

export async function stopTemporalEnv(): Promise<void> {
  if (!env) return;
  const started = await env.catch(() => undefined);
  env = undefined;
  await started?.teardown();
}

/**
 * Terminates what a visibility query finds still running (children end with their parent) and
 * returns the ids it ended; a workflow that closed meanwhile is not one.
 */
export async function terminateRunning(client: Client, query: string, reason: string): Promise<string[]> {
  const ended: string[] = [];
  for await (const wf of client.workflow.list({ query: `(${query}) AND ExecutionStatus = 'Running'` })) {
    try {
      await client.workflow.getHandle(wf.workflowId, wf.runId).terminate(reason);
      ended.push(wf.workflowId);
    } catch (err) {
      if (!(err instanceof WorkflowNotFoundError)) throw err;
    }
  }
  return ended;
}

/**
 * Ends the runs of these configurations still open on the shared server. Tests that start runs
 * on the real task queue with no worker of their own (a connect's first run) call it when done, so
 * no later test's worker on that queue picks the runs up against its own, unrelated stores.
 */
export async function endRunsOf(configurationIds: Iterable<string>): Promise<void> {
  const { client } = await temporalEnv();
  for (const id of configurationIds)
    await terminateRunning(
      client,
      `WorkflowId STARTS_WITH 'sync/${id}/'`,
      'the test that started it is over',
    );
}

/** endRunsOf every configuration in these stores (a web app's, after its connects' first runs). */
export async function endRunsIn(stores: Stores): Promise<void> {
  await endRunsOf((await stores.configurations.list()).map((c) => c.id));
}

/**
 * What the tests left on the shared server for later ones: workflows still running on the real
 * task queue, and schedules. Ends them and names each; nothing when no test started the server.
 */
export async function reapTemporalLeftovers(): Promise<string[]> {
  const started = await env?.catch(() => undefined);
  if (!started) return [];
  const { client } = started;
  const left = (await terminateRunning(client, `TaskQueue = '${TASK_QUEUE}'`, 'left behind by a test')).map(
    (id) => `workflow ${id} (task queue ${TASK_QUEUE})`,
  );
  for await (const schedule of client.schedule.list()) {
    await client.schedule.getHandle(schedule.scheduleId).delete();
    left.push(`schedule ${schedule.scheduleId}`);
  }
  return left;
}
