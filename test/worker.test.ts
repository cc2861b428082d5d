import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { TASK_QUEUE, workflowIds } from '../src/temporal/constants';
import { missingSearchAttributes, registerSearchAttributes } from '../src/temporal/search-attributes';
import { createWorker } from '../src/worker';
import { selfCheckWorkflow } from '../src/workflows';
import { ProcessorRegistry } from '../src/processors/registry';
import { workflowBundle } from './support/espresso';
import { temporalEnv, testPayloadKeys } from './support/temporal';
import { tempStores } from './support/tmp';

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

  it('has espresso search attributes registered, and registering again changes nothing', async () => {
    const operator = env.connection.operatorService;
    assert.deepEqual(await missingSearchAttributes(operator, env.namespace ?? 'default'), []);
    assert.deepEqual(await registerSearchAttributes(operator, env.namespace ?? 'default'), []);
  });
});
