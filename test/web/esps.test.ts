// Each real ESP connected through the web flow, as a publisher would, against its fake server:
// the key form for every ESP, the OAuth round trip for the ESPs with an OAuth app, and the start
// page with and without the apps configured.
import { strict as assert } from 'node:assert';
import request from 'supertest';
import { loadConfig, OAUTH_ESPS } from '../../src/config';
import { createProcessorRegistry, ProcessorRegistry } from '../../src/processors/registry';
import type { Configuration, Stores } from '../../src/storage';
import { createApp } from '../../src/web/app';
import { escapeHtml } from '../../src/lib/html';
import { brevoHarness } from '../processors/brevo-harness';
import type { ProcessorHarness } from '../processors/harness';
import { beehiivHarness } from '../processors/beehiiv-harness';
import { hubspotHarness } from '../processors/hubspot-harness';
import { iterableHarness } from '../processors/iterable-harness';
import { kitHarness } from '../processors/kit-harness';
import { klaviyoHarness } from '../processors/klaviyo-harness';
import { mailchimpHarness } from '../processors/mailchimp-harness';
import { sendgridHarness } from '../processors/sendgrid-harness';
import { endRunsIn, temporalEnv } from '../support/temporal';
import { tempStores } from '../support/tmp';
import { webDeps } from '../support/web';

const field = (html: string, name: string) => new RegExp(`name="${name}" value="([^"]+)"`).exec(html)?.[1];

/** The stores of every web app below: their connects' first runs are ended when the tests are done. */
const webStores: Stores[] = [];

async function webFor(h: ProcessorHarness) {
  const stores = await tempStores();
  webStores.push(stores);
  const env = await temporalEnv();
  const app = createApp(
    webDeps(stores, async () => env.connection, { processors: new ProcessorRegistry([h.processor]) }),
  );
  return { stores, agent: request.agent(app) };
}

/** Finishes a flow that may stop at the list picker (accounts with several lists). */
async function finish(agent: ReturnType<typeof request.agent>, res: request.Response) {
  if (!/name="listId"/.test(res.text)) return res;
  const listId = /name="listId" value="([^"]+)"/.exec(res.text)![1]!;
  return agent
    .post(res.text.match(/action="([^"]+\/list)"/)![1]!)
    .type('form')
    .send({ _csrf: field(res.text, '_csrf'), nonce: field(res.text, 'nonce'), listId })
    .expect(200);
}

const harnesses: Array<[string, () => Promise<ProcessorHarness>]> = [
  ['mailchimp', mailchimpHarness],
  ['hubspot', hubspotHarness],
  ['klaviyo', klaviyoHarness],
  ['sendgrid', () => sendgridHarness()],
  ['iterable', () => iterableHarness()],
  ['kit', kitHarness],
  ['brevo', brevoHarness],
  ['beehiiv', () => beehiivHarness()],
];

describe('connecting the real ESPs through the web flow (against their fakes)', function () {
  this.timeout(120_000);
  after(async () => {
    for (const stores of webStores) await endRunsIn(stores);
  });

  for (const [esp, makeHarness] of harnesses) {
    it(`${esp}: the key form validates the key, saves the configuration and shows the merge tag`, async () => {
      const h = await makeHarness();
      try {
        const probe = await h.connectWithApiKey();
        const { apiKey } = JSON.parse(await h.secrets.get(probe.credentialsSecretId)) as { apiKey: string };
        const { account } = await h.processor.connectWithApiKey(apiKey);
        const { stores, agent } = await webFor(h);
        const form = await agent.get(`/auth/${esp}/key`).expect(200);
        assert.match(form.text, new RegExp(escapeHtml(h.processor.descriptor.apiKey!.label)));
        const bad = await agent
          .post(`/auth/${esp}/key`)
          .type('form')
          .send({ _csrf: field(form.text, '_csrf'), apiKey: h.invalidApiKey })
          .expect(400);
        assert.ok(!bad.text.includes(h.invalidApiKey));
        const done = await finish(
          agent,
          await agent
            .post(`/auth/${esp}/key`)
            .type('form')
            .send({ _csrf: field(form.text, '_csrf'), apiKey })
            .expect(200),
        );
        assert.ok(!done.text.includes(apiKey), 'the key is not echoed');
        const [configuration] = await stores.configurations.list();
        assert.ok(configuration, 'a configuration was saved');
        assert.equal(configuration.esp, esp);
        assert.equal(configuration.espAccountId, account.accountId);
        assert.equal(configuration.fieldName, h.processor.fieldName());
        assert.equal(configuration.apiBaseUrl, account.apiBaseUrl);
        assert.ok(
          done.text.includes(escapeHtml(`lctg=${h.processor.descriptor.mergeTag(configuration.fieldName)}`)),
          'the success page shows the merge tag',
        );
        const stored = JSON.parse(await stores.secrets.get(configuration.credentialsSecretId)) as {
          apiKey: string;
        };
        assert.equal(stored.apiKey, apiKey);
      } finally {
        await h.stop();
      }
    });
  }

  for (const [esp, makeHarness] of harnesses.filter(([esp]) =>
    (OAUTH_ESPS as readonly string[]).includes(esp),
  )) {
    it(`${esp}: the OAuth round trip (start, the ESP's consent, callback) saves tokens and the account`, async () => {
      const h = await makeHarness();
      try {
        const fake = (h as unknown as { fake: { consentPortal?: unknown; addPortal?: () => unknown } }).fake;
        if (fake.addPortal) fake.consentPortal = fake.addPortal(); // HubSpot: whose portal consents
        const { stores, agent } = await webFor(h);
        const start = await agent.get(`/auth/${esp}/start`).expect(302);
        const authorize = new URL(start.headers.location!);
        assert.equal(
          authorize.searchParams.get('redirect_uri'),
          `http://localhost:3000/auth/${esp}/callback`,
        );
        const consent = await fetch(authorize, { redirect: 'manual' });
        assert.equal(consent.status, 302);
        const back = new URL(consent.headers.get('location')!);
        assert.equal(back.origin + back.pathname, `http://localhost:3000/auth/${esp}/callback`);
        const done = await finish(agent, await agent.get(back.pathname + back.search).expect(200));
        assert.match(done.text, /lctg=/);
        const [configuration] = (await stores.configurations.list()) as Configuration[];
        assert.equal(configuration!.esp, esp);
        const credentials = JSON.parse(await stores.secrets.get(configuration!.credentialsSecretId)) as {
          kind: string;
          accessToken: string;
        };
        assert.equal(credentials.kind, 'oauth2');
        assert.ok(!done.text.includes(credentials.accessToken));
        if (esp === 'mailchimp') assert.ok(configuration!.apiBaseUrl, 'the data center is saved');
      } finally {
        await h.stop();
      }
    });
  }

  it('offers OAuth sign-in only for ESPs whose app is configured, and says why otherwise', async () => {
    const page = async (env: Record<string, string>) => {
      const config = loadConfig({ ESPRESSO_SANDBOX_ENABLED: 'false', ...env });
      const stores = await tempStores();
      const processors = createProcessorRegistry({ secrets: stores.secrets }, config);
      const app = createApp(webDeps(stores, async () => (await temporalEnv()).connection, { processors }));
      return (await request(app).get('/').expect(200)).text;
    };
    const bare = await page({});
    for (const esp of ['mailchimp', 'hubspot', 'klaviyo', 'sendgrid', 'iterable', 'kit', 'brevo']) {
      assert.match(bare, new RegExp(`href="/auth/${esp}/key"`));
      assert.doesNotMatch(bare, new RegExp(`href="/auth/${esp}/start"`));
    }
    assert.match(
      bare,
      /Signing in with Mailchimp is not set up on this server.*ESPRESSO_MAILCHIMP_CLIENT_ID/,
    );
    assert.match(bare, /Signing in with HubSpot is not set up on this server.*ESPRESSO_HUBSPOT_CLIENT_ID/);
    assert.match(bare, /Signing in with Kit is not set up on this server.*ESPRESSO_KIT_CLIENT_ID/);
    assert.doesNotMatch(bare, /Signing in with (Klaviyo|SendGrid|Iterable|Brevo)/);
    assert.match(bare, /href="\/auth\/beehiiv\/key"/);
    assert.doesNotMatch(bare, /href="\/auth\/beehiiv\/start"/);
    assert.match(bare, /Signing in with beehiiv is not set up on this server.*ESPRESSO_BEEHIIV_CLIENT_ID/);

    const withApps = await page({
      ESPRESSO_MAILCHIMP_CLIENT_ID: 'mc-client',
      ESPRESSO_MAILCHIMP_CLIENT_SECRET: 'mc-secret',
      ESPRESSO_HUBSPOT_CLIENT_ID: 'hs-client',
      ESPRESSO_HUBSPOT_CLIENT_SECRET: 'hs-secret',
      ESPRESSO_KIT_CLIENT_ID: 'kit-client',
      ESPRESSO_KIT_CLIENT_SECRET: 'kit-secret',
      ESPRESSO_BEEHIIV_CLIENT_ID: 'bh-client',
      ESPRESSO_BEEHIIV_CLIENT_SECRET: 'bh-secret',
    });
    assert.match(withApps, /href="\/auth\/beehiiv\/start"/);
    assert.match(withApps, /href="\/auth\/mailchimp\/start"/);
    assert.match(withApps, /href="\/auth\/hubspot\/start"/);
    assert.match(withApps, /href="\/auth\/kit\/start"/);
    assert.doesNotMatch(withApps, /not set up on this server/);
    assert.ok(!withApps.includes('mc-secret') && !withApps.includes('hs-secret'));
    assert.ok(!withApps.includes('kit-secret'));
    assert.throws(
      () => loadConfig({ ESPRESSO_HUBSPOT_CLIENT_ID: 'only-the-id' }),
      /ESPRESSO_HUBSPOT_CLIENT_ID \/ ESPRESSO_HUBSPOT_CLIENT_SECRET: set both or neither/,
    );
  });
});
