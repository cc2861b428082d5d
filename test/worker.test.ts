import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { msToTs } from '@temporalio/common/lib/time';
import { temporal } from '@temporalio/proto';
import { allSearchAttributes, TASK_QUEUE, workflowIds } from '../src/temporal/constants';
import { missingSearchAttributes, registerSearchAttributes } from '../src/temporal/search-attributes';
import { waitForWorker } from '../src/temporal/worker-ready';
import { createWorker } from '../src/worker';
import { selfCheckWorkflow } from '../src/workflows';
import { ProcessorRegistry } from '../src/processors/registry';
import { workflowBundle } from './support/espresso';
import { projectRoot } from '../src/paths';
import { temporalEnv, testPayloadKeys, testPayloadKeysEnv } from './support/temporal';
import { freePort } from './support/ports';
import { tempDir, tempStores } from './support/tmp';

describe('worker on a real Temporal dev server', () => {
  let env: TestWorkflowEnvironment;
  before(async () => {
    env = await temporalEnv();
  });

  it('runs the self-check workflow end to end against the stores', async () => {
    const stores = await tempStores();
    await stores.configurations.create({
      esp: 'sandbox',
      accountLabel: 'Test',
      espAccountId: 'a',
      fieldName: 'lcee',
      status: 'active',
      maintenance: true,
    });
    const taskQueue = `${TASK_QUEUE}-${randomBytes(3).toString('hex')}`;
    const worker = await createWorker({
      connection: env.nativeConnection,
      namespace: 'default',
      taskQueue,
      stores,
      processors: new ProcessorRegistry([]),
      alerts: async () => undefined,
      workflowBundle: await workflowBundle(),
      payloadKeys: testPayloadKeys,
    });
    const result = await worker.runUntil(
      env.client.workflow.execute(selfCheckWorkflow, {
        taskQueue,
        workflowId: workflowIds.selfCheck(randomBytes(4).toString('hex')),
      }),
    );
    assert.equal(result.configurations, 1);
    assert.match(result.blobStore, /local directory/);
    // The probe cleans up after itself.
    assert.deepEqual(await stores.blobs.list('health/'), []);
    assert.deepEqual(await stores.secrets.list(), []);
  });

  /** `dist/src/worker/main.js` as a process; `exit` resolves to its exit code, or 'still running' after `ms`. */
  async function startWorkerProcess(temporalAddress: string, env: NodeJS.ProcessEnv = {}) {
    const child = spawn(process.execPath, [join(projectRoot, 'dist/src/worker/main.js')], {
      env: {
        ...process.env,
        TEMPORAL_ADDRESS: temporalAddress,
        ESPRESSO_PAYLOAD_KEYS: testPayloadKeysEnv,
        ESPRESSO_DATA_DIR: await tempDir(),
        ESPRESSO_LOG_LEVEL: 'error',
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout!.on('data', (d) => (output += d));
    child.stderr!.on('data', (d) => (output += d));
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    return {
      child,
      /** What it has written to stdout and stderr so far. */
      output: () => output,
      exit: (ms: number) =>
        Promise.race([exited, new Promise((r) => setTimeout(() => r('still running'), ms))]),
    };
  }

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    it(`a worker process told to stop (${signal}) while it is still connecting ends at once`, async () => {
      // A Temporal address that accepts connections and never answers: the worker is still
      // connecting when the signal comes.
      const silent = createServer(() => undefined);
      await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
      const worker = await startWorkerProcess(`127.0.0.1:${(silent.address() as AddressInfo).port}`);
      try {
        await new Promise((r) => setTimeout(r, 1_500));
        assert.equal(worker.child.exitCode, null, 'the worker gave up before the test could stop it');
        worker.child.kill(signal);
        assert.equal(await worker.exit(5_000), 0, `the worker did not exit within 5 s of ${signal}`);
      } finally {
        if (worker.child.exitCode === null) worker.child.kill('SIGKILL');
        silent.close();
      }
    });
  }

  it('a worker process told to stop (SIGINT) the moment its metrics endpoint answers ends at once, its port closed', async () => {
    // The endpoint answers about half a second before the worker runs (the workflow bundle is
    // still loading): the moment a deploy or a test may stop it.
    const port = await freePort();
    const metrics = `http://127.0.0.1:${port}/metrics`;
    const worker = await startWorkerProcess(env.address, { ESPRESSO_METRICS_PORT: String(port) });
    try {
      const deadline = Date.now() + 60_000;
      while (
        !(await fetch(metrics).then(
          (r) => r.ok,
          () => false,
        ))
      ) {
        assert.ok(Date.now() < deadline, 'the metrics endpoint never answered');
        await new Promise((r) => setTimeout(r, 20));
      }
      worker.child.kill('SIGINT');
      assert.equal(await worker.exit(5_000), 0, 'the worker did not exit within 5 s of SIGINT');
      await assert.rejects(fetch(metrics), 'the metrics port is still open');
    } finally {
      if (worker.child.exitCode === null) worker.child.kill('SIGKILL');
    }
  });

  it('on a server that refuses to register search attributes (Temporal Cloud), logs a warning and goes on polling', async function () {
    this.timeout(60_000);
    // A namespace whose Keyword attributes are all taken: the server refuses espresso's, as Cloud
    // refuses the call itself.
    const namespace = `refusing-${randomBytes(3).toString('hex')}`;
    const { workflowService, operatorService } = env.connection;
    await workflowService.registerNamespace({
      namespace,
      workflowExecutionRetentionPeriod: msToTs('1 day'),
    });
    const keyword = temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD;
    for (let i = 0; i < 10; i++) {
      await operatorService.addSearchAttributes({ namespace, searchAttributes: { [`Other${i}`]: keyword } });
    }
    const worker = await startWorkerProcess(env.address, {
      TEMPORAL_NAMESPACE: namespace,
      ESPRESSO_LOG_LEVEL: 'warn',
    });
    try {
      await waitForWorker(env.connection, namespace, TASK_QUEUE, 30_000, { pid: worker.child.pid });
      const warning = worker
        .output()
        .split('\n')
        .find((line) => line.includes('could not register search attributes'));
      assert.ok(warning, `no warning in the worker's log:\n${worker.output()}`);
      assert.equal(JSON.parse(warning).level, 40);
      assert.match(warning, /cannot have more than 10 search attribute of type Keyword/);
      assert.deepEqual(
        (await missingSearchAttributes(operatorService, namespace)).map((a) => a.name),
        allSearchAttributes.map((a) => a.name),
      );
    } finally {
      worker.child.kill('SIGTERM');
      assert.equal(await worker.exit(10_000), 0);
    }
  });

  it('has espresso search attributes registered, and registering again changes nothing', async () => {
    const operator = env.connection.operatorService;
    assert.deepEqual(await missingSearchAttributes(operator, env.namespace ?? 'default'), []);
    assert.deepEqual(await registerSearchAttributes(operator, env.namespace ?? 'default'), []);
  });
});
