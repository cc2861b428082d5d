import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { TASK_QUEUE, workflowIds } from '../src/temporal/constants';
import { missingSearchAttributes, registerSearchAttributes } from '../src/temporal/search-attributes';
import { createWorker } from '../src/worker';
import { selfCheckWorkflow } from '../src/workflows';
import { ProcessorRegistry } from '../src/processors/registry';
import { workflowBundle } from './support/espresso';
import { projectRoot } from '../src/paths';
import { temporalEnv, testPayloadKeys, testPayloadKeysEnv } from './support/temporal';
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

  it('a worker process told to stop while it is still starting ends at once', async () => {
    // A Temporal address that accepts connections and never answers: the worker is still
    // connecting when SIGTERM comes.
    const silent = createServer(() => undefined);
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const worker = spawn(process.execPath, [join(projectRoot, 'dist/src/worker/main.js')], {
      env: {
        ...process.env,
        TEMPORAL_ADDRESS: `127.0.0.1:${(silent.address() as AddressInfo).port}`,
        ESPRESSO_PAYLOAD_KEYS: testPayloadKeysEnv,
        ESPRESSO_DATA_DIR: await tempDir(),
        ESPRESSO_LOG_LEVEL: 'error',
      },
      stdio: 'ignore',
    });
    try {
      await new Promise((r) => setTimeout(r, 1_500));
      assert.equal(worker.exitCode, null, 'the worker gave up before the test could stop it');
      const exited = new Promise<number | null>((r) => worker.once('exit', (code) => r(code)));
      worker.kill('SIGTERM');
      const code = await Promise.race([
        exited,
        new Promise((r) => setTimeout(() => r('still running'), 5_000)),
      ]);
      assert.equal(code, 0, 'the worker did not exit within 5 s of SIGTERM during start-up');
    } finally {
      if (worker.exitCode === null) worker.kill('SIGKILL');
      silent.close();
    }
  });

  it('has espresso search attributes registered, and registering again changes nothing', async () => {
    const operator = env.connection.operatorService;
    assert.deepEqual(await missingSearchAttributes(operator, env.namespace ?? 'default'), []);
    assert.deepEqual(await registerSearchAttributes(operator, env.namespace ?? 'default'), []);
  });
});
