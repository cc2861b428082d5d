// A whole daily run (maintenance, export, dispatch, summary) on the real dev server for each real
// ESP processor against its fake: listing through searches, cursors and export files, writing
// through batches and asynchronous jobs.
import { strict as assert } from 'node:assert';
import { configurationSyncWorkflow } from '../../src/workflows';
import { brevoHarness } from '../processors/brevo-harness';
import type { ProcessorHarness } from '../processors/harness';
import { beehiivHarness } from '../processors/beehiiv-harness';
import { hubspotHarness } from '../processors/hubspot-harness';
import { iterableHarness } from '../processors/iterable-harness';
import { kitHarness } from '../processors/kit-harness';
import { klaviyoHarness } from '../processors/klaviyo-harness';
import { mailchimpHarness } from '../processors/mailchimp-harness';
import { sendgridHarness } from '../processors/sendgrid-harness';
import { startEspresso, type Espresso } from '../support/espresso';

const RUN_DATE = '2026-11-28';
const CONTACTS = 1_234;

/** One fake Kit for both of its ways in: espresso registers one processor per ESP. */
let kitOnce: ReturnType<typeof kitHarness> | undefined;
const kit = () => (kitOnce ??= kitHarness());

const harnesses: Array<[string, () => Promise<ProcessorHarness>]> = [
  ['Mailchimp', mailchimpHarness],
  ['HubSpot', hubspotHarness],
  ['Klaviyo', klaviyoHarness],
  ['SendGrid', () => sendgridHarness({ jobPollMs: 5 })],
  ['Iterable', () => iterableHarness({ jobPollMs: 5 })],
  ['Kit (API key: one update per subscriber)', kit],
  ['Kit (OAuth: bulk updates)', () => kit().then((h) => ({ ...h, connectWithApiKey: h.connectWithOAuth! }))],
  ['Brevo', brevoHarness],
  ['beehiiv', beehiivHarness],
];

describe('a daily run with each real ESP processor (against its fake)', function () {
  this.timeout(300_000);
  const hs: ProcessorHarness[] = [];
  let e: Espresso;
  before(async () => {
    for (const [, make] of harnesses) hs.push(await make());
    e = await startEspresso({ processors: hs.map((h) => h.processor) });
  });
  after(async () => {
    try {
      await e?.stop();
    } finally {
      for (const h of hs) await h.stop();
    }
  });

  harnesses.forEach(([name], i) => {
    it(`${name}: every contact gets exactly its chunk file value; a second run finds nothing to do`, async () => {
      const h = hs[i]!;
      const target = await h.connectWithApiKey();
      const seeded = await h.seed(target, CONTACTS);
      // The configuration uses the harness's credentials entry (its id names it).
      const configuration = await e.stores.configurations.create(
        {
          esp: target.esp,
          accountLabel: `${name} test account`,
          espAccountId: target.espAccountId,
          espListId: target.espListId,
          fieldName: target.fieldName,
          ...(target.apiBaseUrl ? { apiBaseUrl: target.apiBaseUrl } : {}),
          status: 'active',
          maintenance: true,
        },
        { id: target.id },
      );
      const run = (runDate: string) =>
        e.client.workflow.execute(configurationSyncWorkflow, {
          taskQueue: e.taskQueue,
          workflowId: `sync/${configuration.id}/${runDate}`,
          args: [{ configurationId: configuration.id, runDate, mode: 'incremental' }],
        });
      const first = await run(RUN_DATE);
      assert.deepEqual(
        [first.status, first.exported, first.updated, first.rejected],
        ['completed', CONTACTS, CONTACTS, 0],
      );
      const chunks = await e.chunkValues(configuration.id, RUN_DATE);
      assert.deepEqual(new Set(chunks.keys()), new Set(seeded));
      let wrong = 0;
      for (const [contactId, value] of chunks) if ((await h.valueOf(target, contactId)) !== value) wrong++;
      assert.equal(wrong, 0, 'contacts whose ESP value differs from the chunk file');

      const second = await run('2026-11-29');
      assert.deepEqual([second.status, second.exported, second.updated], ['completed', 0, 0]);
    });
  });
});
