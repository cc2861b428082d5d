// The publisher's private page over HTTP (supertest) on real local stores: the signed link, what the
// page shows, revoking links from the admin page, and disconnecting after a confirmation.
import { strict as assert } from 'node:assert';
import request from 'supertest';
import { auditPage } from '../../src/audit/log';
import { ProcessorRegistry } from '../../src/processors/registry';
import { SandboxProcessor } from '../../src/processors/sandbox';
import { recordHistory } from '../../src/runs/history';
import { NotFoundError, type Configuration, type Stores } from '../../src/storage';
import { createApp } from '../../src/web/app';
import { publisherPath } from '../../src/web/publisher-link';
import { Signer } from '../../src/web/security';
import { summaryFor } from '../support/run-summaries';
import { tempStores } from '../support/tmp';
import { webDeps } from '../support/web';

const SECRET = 'publisher-test-secret-0123456789abcdef';
const ADMIN = { user: 'ops', password: 'correct horse battery' };
const field = (html: string, name: string) => new RegExp(`name="${name}" value="([^"]+)"`).exec(html)?.[1];

describe('web: the publisher page', () => {
  let stores: Stores;
  let agent: ReturnType<typeof request.agent>;
  let c: Configuration;
  const signer = new Signer(SECRET);

  before(async () => {
    stores = await tempStores();
    const sandbox = new SandboxProcessor(
      { secrets: stores.secrets },
      { url: 'http://127.0.0.1:9', rateLimit: { requests: 1, perMs: 1000 }, concurrency: 1 },
    );
    agent = request.agent(
      createApp(
        webDeps(
          stores,
          async () => {
            throw new Error('this page needs no Temporal');
          },
          {
            processors: new ProcessorRegistry([sandbox]),
            web: { publicUrl: 'http://localhost:3000', sessionSecret: SECRET, admin: ADMIN },
          },
        ),
      ),
    );
    c = await stores.configurations.create({
      esp: 'sandbox',
      accountLabel: 'Roasters <b>& co</b>',
      espAccountId: 'acct_pub',
      fieldName: 'lcee',
      status: 'needs_reauth',
      maintenance: true,
    });
    await stores.secrets.put(c.credentialsSecretId, '{"apiKey":"k"}');
    await recordHistory(stores.blobs, summaryFor(c.id, '2026-12-01', '2026-12-01T06:00:00.000Z'));
    await recordHistory(
      stores.blobs,
      summaryFor(c.id, '2026-12-02_dry-run-060000-abcd', '2026-12-02T06:00:00.000Z', { dryRun: true }),
    );
  });

  it('opens with the signed link only: status, reconnect, merge tag, runs', async () => {
    const path = await publisherPath(stores.blobs, signer, c.id);
    const shown = await agent.get(path).expect(200);
    assert.match(shown.text, /<h1>Roasters &lt;b&gt;&amp; co&lt;\/b&gt;<\/h1>/);
    assert.match(shown.text, new RegExp(`id="reconnect" href="/auth/sandbox/start\\?reauthorize=${c.id}"`));
    assert.match(shown.text, /id="merge-tag">lctg=\{\{contact\.lcee\}\}/);
    assert.equal([...shown.text.matchAll(/<tr><td>2026-/g)].length, 1, 'the dry run is not shown');
    await agent.get(path.replace(/\.[^.]+$/, '.' + 'A'.repeat(43))).expect(404);
    await agent.get(path.replace(c.id, 'cfg_other0000000')).expect(404);
    await agent.get(`/publisher/${c.id}/1${path.slice(path.lastIndexOf('/') + 2)}`).expect(404);
  });

  it('stops opening once an operator revokes the links; the new link opens', async () => {
    const old = await publisherPath(stores.blobs, signer, c.id);
    const admin = await agent
      .get(`/admin/configurations/${c.id}`)
      .auth(ADMIN.user, ADMIN.password)
      .expect(200);
    assert.match(
      admin.text,
      new RegExp(`id="publisher-link" value="http://localhost:3000${old.replace(/[.]/g, '\\.')}"`),
    );
    await agent
      .post(`/admin/configurations/${c.id}/revoke-link`)
      .auth(ADMIN.user, ADMIN.password)
      .type('form')
      .send({ _csrf: field(admin.text, '_csrf') })
      .expect(303);
    await agent.get(old).expect(404);
    const fresh = await publisherPath(stores.blobs, signer, c.id);
    assert.notEqual(fresh, old);
    await agent.get(fresh).expect(200);
  });

  it('disconnects after a confirmation: credentials deleted, configuration disabled, in the audit log', async () => {
    const path = await publisherPath(stores.blobs, signer, c.id);
    const confirm = await agent.get(`${path}/disconnect`).expect(200);
    await agent.post(`${path}/disconnect`).type('form').send({ _csrf: 'forged' }).expect(403);
    assert.equal((await stores.configurations.get(c.id)).status, 'needs_reauth');
    const done = await agent
      .post(`${path}/disconnect`)
      .type('form')
      .send({ _csrf: field(confirm.text, '_csrf') })
      .expect(200);
    assert.match(done.text, /<h1>Disconnected<\/h1>/);
    const after = await stores.configurations.get(c.id);
    assert.equal(after.status, 'disabled');
    await assert.rejects(stores.secrets.get(c.credentialsSecretId), NotFoundError);
    const page = await agent.get(path).expect(200);
    assert.match(page.text, /Disconnected: espresso holds no credentials/);
    assert.doesNotMatch(page.text, /id="disconnect"/);
    const { entries } = await auditPage(stores.blobs, { limit: 5 });
    assert.deepEqual(
      entries.map((e) => [e.action, e.actor]),
      [
        ['disconnect', 'publisher sandbox account acct_pub'],
        ['revoke-link', 'operator ops'],
      ],
    );
  });
});
