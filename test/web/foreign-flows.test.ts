// A connect flow started for one ESP and continued on another ESP's route is refused at every step
// (OAuth callback, list choice, key form with a re-authorization, re-authorization start), with
// 400 and nothing created or changed: credentials only ever land in a configuration of the ESP that
// validated them.
import { strict as assert } from 'node:assert';
import request from 'supertest';
import { ProcessorRegistry } from '../../src/processors/registry';
import { SandboxProcessor } from '../../src/processors/sandbox';
import { answerSandboxConsent } from '../../src/sandbox/consent';
import { SandboxState } from '../../src/sandbox/state';
import type { Configuration, Stores } from '../../src/storage';
import { createApp } from '../../src/web/app';
import { mailchimpHarness, type MailchimpHarness } from '../processors/mailchimp-harness';
import { startSandbox } from '../processors/sandbox-harness';
import { endRunsIn, temporalEnv } from '../support/temporal';
import { tempStores } from '../support/tmp';
import { webDeps } from '../support/web';

const field = (html: string, name: string) => new RegExp(`name="${name}" value="([^"]+)"`).exec(html)?.[1];

/** Every configuration document and its stored credentials, to compare before and after. */
async function snapshot(stores: Stores) {
  const all = await stores.configurations.list();
  return Promise.all(
    all.map(async (c) => ({ c, credentials: await stores.secrets.get(c.credentialsSecretId) })),
  );
}

describe('web: a flow of one ESP never finishes on another ESP’s route', function () {
  this.timeout(60_000);
  let sandbox: Awaited<ReturnType<typeof startSandbox>>;
  let mailchimp: MailchimpHarness;
  let stores: Stores;
  let agent: ReturnType<typeof request.agent>;
  /** A Mailchimp configuration whose account and list ids equal the Sandbox demo's (the attack's victim). */
  let victim: Configuration;

  beforeEach(async () => {
    sandbox = await startSandbox(SandboxState.demo(10));
    mailchimp = await mailchimpHarness();
    stores = await tempStores();
    const sandboxProcessor = new SandboxProcessor(
      { secrets: stores.secrets },
      { url: sandbox.url, rateLimit: { requests: 100, perMs: 1000 }, concurrency: 4 },
    );
    const env = await temporalEnv();
    agent = request.agent(
      createApp(
        webDeps(stores, async () => env.connection, {
          processors: new ProcessorRegistry([sandboxProcessor, mailchimp.processor]),
        }),
      ),
    );
    victim = await stores.configurations.create({
      esp: 'mailchimp',
      accountLabel: 'A real Mailchimp audience',
      espAccountId: 'acct_demo',
      espListId: 'list_offers',
      fieldName: 'LCEE',
      status: 'active',
      maintenance: true,
    });
    await stores.secrets.put(
      victim.credentialsSecretId,
      JSON.stringify({ kind: 'apiKey', apiKey: mailchimp.fake.apiKey }),
    );
  });
  afterEach(async () => {
    await endRunsIn(stores);
    await sandbox.stop();
    await mailchimp.stop();
  });

  it('list choice: a Sandbox flow posted to /auth/mailchimp/list is refused, and still finishes on its own route', async () => {
    const form = await agent.get('/auth/sandbox/key').expect(200);
    const lists = await agent
      .post('/auth/sandbox/key')
      .type('form')
      .send({ _csrf: field(form.text, '_csrf'), apiKey: 'sandbox-demo-key' })
      .expect(200);
    const before = await snapshot(stores);
    const foreign = await agent
      .post('/auth/mailchimp/list')
      .type('form')
      .send({ _csrf: field(lists.text, '_csrf'), nonce: field(lists.text, 'nonce'), listId: 'list_offers' })
      .expect(400);
    assert.match(foreign.text, /started for another ESP/);
    assert.deepEqual(await snapshot(stores), before, 'nothing created or changed');
    // The flow was not used up by the refused post: its own route still finishes it.
    await agent
      .post('/auth/sandbox/list')
      .type('form')
      .send({ _csrf: field(lists.text, '_csrf'), nonce: field(lists.text, 'nonce'), listId: 'list_offers' })
      .expect(200);
    const after = await stores.configurations.list();
    const created = after.find((c) => c.id !== victim.id)!;
    assert.equal(created.esp, 'sandbox');
    assert.deepEqual(
      await stores.configurations.get(victim.id),
      victim,
      'the Mailchimp configuration is untouched',
    );
    assert.equal(
      JSON.parse(await stores.secrets.get(victim.credentialsSecretId)).apiKey,
      mailchimp.fake.apiKey,
    );
  });

  it('OAuth callback: a Sandbox authorization code brought to /auth/mailchimp/callback is refused', async () => {
    const start = await agent.get('/auth/sandbox/start').expect(302);
    const back = await answerSandboxConsent(sandbox.url, start.headers.location!, { account: 'acct_demo' });
    const before = await snapshot(stores);
    await agent.get(`/auth/mailchimp/callback${back.search}`).expect(400);
    assert.deepEqual(await snapshot(stores), before, 'nothing created or changed');
    // Its own route still takes it to the list choice.
    const listPage = await agent.get(`/auth/sandbox/callback${back.search}`).expect(200);
    assert.match(listPage.text, /Which list/);
  });

  it('key form: re-authorizing a Sandbox configuration through the Mailchimp route is refused before the ESP is asked', async () => {
    const sandboxConfiguration = await stores.configurations.create({
      esp: 'sandbox',
      accountLabel: 'Demo Coffee Roasters',
      espAccountId: 'acct_demo',
      espListId: 'list_newsletter',
      fieldName: 'lcee',
      status: 'needs_reauth',
      maintenance: true,
    });
    await stores.secrets.put(
      sandboxConfiguration.credentialsSecretId,
      JSON.stringify({ kind: 'apiKey', apiKey: 'sandbox-demo-key' }),
    );
    const before = await snapshot(stores);
    const requestsBefore = mailchimp.fake.requests.length;
    const page = await agent.get(`/auth/mailchimp/key?reauthorize=${sandboxConfiguration.id}`).expect(400);
    assert.match(page.text, /not connected to this ESP/);
    const form = await agent.get('/auth/mailchimp/key').expect(200);
    await agent
      .post('/auth/mailchimp/key')
      .type('form')
      .send({
        _csrf: field(form.text, '_csrf'),
        apiKey: mailchimp.fake.apiKey,
        reauthorize: sandboxConfiguration.id,
      })
      .expect(400);
    assert.deepEqual(await snapshot(stores), before, 'nothing created or changed');
    assert.equal(mailchimp.fake.requests.length, requestsBefore, 'Mailchimp was not asked');
  });

  it('re-authorization start: an OAuth start for another ESP’s configuration is refused and sends nobody to an ESP', async () => {
    const pendingBefore = await stores.blobs.list('web/pending/');
    const own = await agent
      .get(`/auth/mailchimp/start?reauthorize=${(await stores.configurations.list())[0]!.id}`)
      .expect(302);
    assert.match(
      own.headers.location!,
      /\/oauth2\/authorize\?/,
      'the Mailchimp re-authorization of a Mailchimp configuration starts',
    );
    const sandboxConfiguration = await stores.configurations.create({
      esp: 'sandbox',
      accountLabel: 'Demo Coffee Roasters',
      espAccountId: 'acct_demo',
      espListId: 'list_newsletter',
      fieldName: 'lcee',
      status: 'needs_reauth',
      maintenance: true,
    });
    const refused = await agent
      .get(`/auth/mailchimp/start?reauthorize=${sandboxConfiguration.id}`)
      .expect(400);
    assert.equal(refused.headers.location, undefined);
    assert.deepEqual(await stores.blobs.list('web/pending/'), pendingBefore, 'no flow was stored');
  });
});
