import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { Client } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import { ALLOW_PLAINTEXT_SETTING, EncryptionCodec } from '../../src/codec';
import { loadConfig } from '../../src/config';
import { runFiles } from '../../src/runs/files';
import { startEspresso, type Espresso } from '../support/espresso';
import { testPayloadKeys } from '../support/temporal';

const EventType = temporal.api.enums.v1.EventType;

describe('a worker refuses payloads that are not encrypted', function () {
  this.timeout(120_000);
  let e: Espresso;
  before(async () => {
    e = await startEspresso();
  });
  after(() => e.stop());

  it('a run started without the codec (as `temporal workflow start --input` would) runs nothing and names why', async () => {
    const { configuration, list } = await e.connect(50);
    // A client of the same Temporal server without espresso's codec: its input is plain JSON.
    const plain = new Client({ connection: e.env.connection, namespace: 'default' });
    const workflowId = `plaintext-${randomBytes(4).toString('hex')}`;
    const handle = await plain.workflow.start('configurationSyncWorkflow', {
      taskQueue: e.taskQueue,
      workflowId,
      args: [{ configurationId: configuration.id, runDate: '2026-12-04', mode: 'full' }],
    });
    try {
      let failure: temporal.api.failure.v1.IFailure | null | undefined;
      for (let i = 0; i < 100 && !failure; i++) {
        const history = await handle.fetchHistory();
        failure = history.events?.find((ev) => ev.eventType === EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED)
          ?.workflowTaskFailedEventAttributes?.failure;
        if (!failure) await new Promise((r) => setTimeout(r, 200));
      }
      assert.ok(failure, 'the workflow task never failed');
      // The failure message itself is encrypted like every other (the Web UI shows it through the codec).
      const [attributes] = await new EncryptionCodec(testPayloadKeys).decode([failure.encodedAttributes!]);
      const { message } = defaultPayloadConverter.fromPayload<{ message: string }>(attributes!);
      assert.match(message, /refused an unencrypted payload/);
      assert.match(message, /ESPRESSO_ALLOW_PLAINTEXT_PAYLOADS/);
      assert.equal((await handle.describe()).status.name, 'RUNNING');
      // Nothing ran: no value in the ESP, no run folder.
      assert.equal(list.values.get(configuration.fieldName)?.some(Boolean) ?? false, false);
      assert.deepEqual(await e.stores.blobs.list(runFiles.prefix(configuration.id, '2026-12-04')), []);
    } finally {
      await handle.terminate('test over');
    }
  });
});

describe('ESPRESSO_ALLOW_PLAINTEXT_PAYLOADS=true (only while migrating)', function () {
  this.timeout(120_000);
  let e: Espresso;
  before(async () => {
    e = await startEspresso({
      allowPlaintextPayloads: loadConfig({ [ALLOW_PLAINTEXT_SETTING]: 'true' }).allowPlaintextPayloads,
    });
  });
  after(() => e.stop());

  it('lets a worker run a run started without the codec, as before encryption', async () => {
    const { configuration, list } = await e.connect(50);
    const plain = new Client({ connection: e.env.connection, namespace: 'default' });
    const workflowId = `plaintext-allowed-${randomBytes(4).toString('hex')}`;
    await plain.workflow.start('configurationSyncWorkflow', {
      taskQueue: e.taskQueue,
      workflowId,
      args: [{ configurationId: configuration.id, runDate: '2026-12-04', mode: 'full' }],
    });
    // What the worker answers is encrypted still: espresso's client reads it.
    await e.client.workflow.getHandle(workflowId).result();
    assert.equal(list.values.get(configuration.fieldName)?.filter(Boolean).length, 50);
  });
});
