// A whole espresso for workflow tests: the shared dev server, a Sandbox ESP on a free port, local
// stores in a temp dir, and a worker on its own task queue running the real activities.
import { randomBytes } from 'node:crypto';
import { bundleWorkflowCode } from '@temporalio/worker';
import type { Alert } from '../../src/alerts';
import type { PayloadKeys } from '../../src/codec';
import { EspMetrics } from '../../src/metrics';
import type { BaseProcessor } from '../../src/processors/base-processor';
import { EspHttp } from '../../src/processors/http';
import { SandboxProcessor, type SandboxProcessorOptions } from '../../src/processors/sandbox';
import { createActivities } from '../../src/activities';
import { ProcessorRegistry } from '../../src/processors/registry';
import { runFiles } from '../../src/runs/files';
import { SandboxState } from '../../src/sandbox/state';
import type { Configuration, Stores } from '../../src/storage';
import { createWorker, failureConverterPath, payloadConverterPath, workflowsPath } from '../../src/worker';
import { startSandbox } from '../processors/sandbox-harness';
import { temporalEnv, testPayloadKeys } from './temporal';
import { tempStores } from './tmp';

let bundle: Promise<{ code: string }> | undefined;
export function workflowBundle(): Promise<{ code: string }> {
  bundle ??= bundleWorkflowCode({
    workflowsPath,
    failureConverterPath,
    payloadConverterPath,
    logger: {
      log: () => undefined,
      info: () => undefined,
      warn: () => undefined,
      error: console.error,
      debug: () => undefined,
      trace: () => undefined,
    },
  });
  return bundle;
}

export async function startEspresso(
  options: {
    taskQueue?: string;
    sandbox?: SandboxState;
    processors?: BaseProcessor[];
    /** Default: `default`. */
    namespace?: string;
    /** Default: local stores in a fresh temp directory. */
    stores?: Stores;
    /** Default: the tests' fixed ring. */
    payloadKeys?: PayloadKeys;
    /** The worker runs unencrypted payloads too (ESPRESSO_ALLOW_PLAINTEXT_PAYLOADS). */
    allowPlaintextPayloads?: boolean;
  } = {},
) {
  const env = await temporalEnv();
  const sandbox = await startSandbox(options.sandbox ?? SandboxState.demo());
  const stores = options.stores ?? (await tempStores());
  const metrics = new EspMetrics();
  const processor = new SandboxProcessor(
    { secrets: stores.secrets, metrics, http: new EspHttp(30_000, metrics) },
    { url: sandbox.url, rateLimit: { requests: 2000, perMs: 1000 }, concurrency: 8 },
  );
  const alerts: Alert[] = [];
  const taskQueue = options.taskQueue ?? `test-${randomBytes(4).toString('hex')}`;
  const processors = new ProcessorRegistry([processor, ...(options.processors ?? [])]);
  let stopping = false;
  const failed = (err: unknown) =>
    new Error(`the test worker on task queue ${taskQueue} failed: ${String(err)}`, { cause: err });
  // A worker that dies mid-test fails that test at once (mocha turns an uncaught error into the
  // failure of the test that is running) instead of leaving its waits to time out; stop() then
  // rejects with it too, so the hook that stops the worker fails as well.
  const startWorker = async (payloadKeys: PayloadKeys) => {
    const worker = await createWorker({
      connection: env.nativeConnection,
      namespace: options.namespace ?? 'default',
      taskQueue,
      workflowBundle: await workflowBundle(),
      stores,
      processors,
      alerts: async (alert) => void alerts.push(alert),
      metrics,
      payloadKeys,
      allowPlaintextPayloads: options.allowPlaintextPayloads,
    });
    const running = worker.run();
    const failure = running.then(
      () => undefined,
      (err: unknown) => err,
    );
    void failure.then((err) => {
      if (err !== undefined && !stopping)
        setImmediate(() => {
          throw failed(err);
        });
    });
    return { worker, failure };
  };
  let { worker, failure } = await startWorker(options.payloadKeys ?? testPayloadKeys);
  /** Stops the worker; its error, if it failed at any time. */
  const stopWorker = async (): Promise<unknown> => {
    if (worker.getState() === 'RUNNING') worker.shutdown();
    return failure;
  };

  /**
   * A configuration on a new Sandbox list of `contacts` contacts, on a Sandbox account of its own
   * (runs of configurations of one account take turns), or on `options.account` (e.g. `acct_demo`,
   * for tests of OAuth grants and of configurations sharing an account).
   */
  const connect = async (
    contacts: number,
    overrides: Partial<Configuration> = {},
    options: { account?: string } = {},
  ) => {
    const suffix = randomBytes(4).toString('hex');
    const listId = `list_${suffix}`;
    const accountId = options.account ?? `acct_${suffix}`;
    let account = sandbox.state.accounts.get(accountId);
    if (!account)
      account = sandbox.state.addAccount(accountId, `Test account ${suffix}`, [`key-${suffix}-0000`]);
    sandbox.state.seed(accountId, listId, contacts);
    const { credentials } = await processor.connectWithApiKey(account.apiKeys[0]!);
    const configuration = await stores.configurations.create({
      esp: 'sandbox',
      accountLabel: account.name,
      espAccountId: accountId,
      espListId: listId,
      fieldName: processor.fieldName(),
      status: 'active',
      maintenance: true,
      ...overrides,
    });
    await stores.secrets.put(configuration.credentialsSecretId, JSON.stringify(credentials));
    return { configuration, account, list: account.lists.get(listId)! };
  };

  /** The activities with a Sandbox processor paced as `options` say (rate, concurrency, batch size), no alerts. */
  const pacedActivities = (options: Omit<SandboxProcessorOptions, 'url'>) =>
    createActivities({
      stores,
      processors: new ProcessorRegistry([
        new SandboxProcessor({ secrets: stores.secrets }, { url: sandbox.url, ...options }),
      ]),
      alerts: async () => undefined,
    });

  /** Every line of every chunk file of a run. */
  const chunkValues = async (configurationId: string, runFolder: string) => {
    const values = new Map<string, string>();
    for (const key of await stores.blobs.list(runFiles.prefix(configurationId, runFolder))) {
      if (!/contacts-\d+\.jsonl$/.test(key)) continue;
      for await (const line of stores.blobs.readLines(key)) {
        const { contactId, value } = JSON.parse(line) as { contactId: string; value: string };
        if (values.has(contactId)) throw new Error(`${contactId} is in two chunk lines`);
        values.set(contactId, value);
      }
    }
    return values;
  };

  return {
    env,
    client: env.client,
    sandbox,
    stores,
    processor,
    alerts,
    metrics,
    taskQueue,
    connect,
    pacedActivities,
    chunkValues,
    get worker() {
      return worker;
    },
    /** Stops the worker and starts another with `payloadKeys`, as a restart reads the ring again. */
    async restartWorker(payloadKeys: PayloadKeys) {
      stopping = true;
      const err = await stopWorker();
      if (err !== undefined) throw failed(err);
      stopping = false;
      ({ worker, failure } = await startWorker(payloadKeys));
    },
    /** Stops the worker and the Sandbox; rejects with the worker's error if it failed at any time. */
    async stop() {
      stopping = true;
      const err = await stopWorker();
      await sandbox.stop();
      if (err !== undefined) throw failed(err);
    },
  };
}

export type Espresso = Awaited<ReturnType<typeof startEspresso>>;
