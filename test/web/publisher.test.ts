// The publisher's private page over HTTP (supertest) on real local stores: the signed link, what the
// page shows, revoking links from the admin page, and disconnecting after a confirmation.
import { strict as assert } from 'node:assert';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { MockActivityEnvironment } from '@temporalio/testing';
import request from 'supertest';
import { createActivities } from '../../src/activities';
import { auditPage } from '../../src/audit/log';
import { loadConfig } from '../../src/config';
import { createDeps } from '../../src/deps';
import { createLogger } from '../../src/logger';
import { ProcessorRegistry } from '../../src/processors/registry';
import { SandboxProcessor } from '../../src/processors/sandbox';
import { recordHistory } from '../../src/runs/history';
import { createStores, NotFoundError, type Configuration, type Stores } from '../../src/storage';
import { createApp } from '../../src/web/app';
import {
  linkValid,
  PUBLISHER_LINK_KEY_SECRET_ID,
  publisherPath,
  revokeLinks,
} from '../../src/publisher-link';
import { summaryFor } from '../support/run-summaries';
import { closeServer, listenLocal } from '../support/listen';
import { tempDir, tempStores } from '../support/tmp';
import { webDeps } from '../support/web';

const SECRET = 'publisher-test-secret-0123456789abcdef';
const ADMIN = { user: 'ops', password: 'correct horse battery' };
const field = (html: string, name: string) => new RegExp(`name="${name}" value="([^"]+)"`).exec(html)?.[1];

describe('web: the publisher page', () => {
  let stores: Stores;
  let agent: ReturnType<typeof request.agent>;
  let c: Configuration;

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
    const path = await publisherPath(stores, c.id);
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
    const old = await publisherPath(stores, c.id);
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
    const fresh = await publisherPath(stores, c.id);
    assert.notEqual(fresh, old);
    await agent.get(fresh).expect(200);
  });

  it('disconnects after a confirmation: credentials deleted, configuration disabled, in the audit log', async () => {
    const path = await publisherPath(stores, c.id);
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

  it('a page that fails (a store refusing) logs the route, never the link that holds the token', async () => {
    const path = await publisherPath(stores, c.id);
    let logged = '';
    const log = createLogger(
      'web',
      'info',
      new Writable({ write: (chunk, _enc, done) => void ((logged += String(chunk)), done()) }),
    );
    const refusing: Stores = {
      ...stores,
      configurations: Object.assign(Object.create(stores.configurations) as Stores['configurations'], {
        get: async () => {
          throw new Error('AccessDenied: the store refused the read');
        },
      }),
    };
    const failing = request(createApp(webDeps(refusing, async () => undefined as never, { log })));
    await failing.get(path).expect(500);
    const line = JSON.parse(logged.trim().split('\n').at(-1)!) as { msg: string; route: string };
    assert.equal(line.msg, 'request failed');
    assert.equal(line.route, '/publisher/:id/:token');
    assert.ok(!logged.includes(path.split('/').at(-1)!), `the token is in the log: ${logged}`);
  });
});

describe('web: the needs_reauth alert carries the publisher link', () => {
  it("a worker's alert links the publisher page, which a web server opens over HTTP; a revoked link stays revoked; the link is never logged", async () => {
    const hooks: Array<{ text: string; status: string; publisherUrl?: string }> = [];
    const receiver = createServer((req, res) => {
      let text = '';
      req.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
      req.on('end', () => (hooks.push(JSON.parse(text)), res.end('ok')));
    });
    const dataDir = await tempDir();
    // The web server: its own stores on the shared data dir and a session secret the worker never sees.
    let webApp: ReturnType<typeof createApp> | undefined;
    const web = createServer((req, res) => void webApp!(req, res));
    const webUrl = await listenLocal(web);
    const hookUrl = await listenLocal(receiver);
    try {
      const config = loadConfig({
        ESPRESSO_DATA_DIR: dataDir,
        ESPRESSO_PUBLIC_URL: webUrl,
        ESPRESSO_ALERT_WEBHOOK_URL: `${hookUrl}/hook`,
      });
      const webStores = createStores(config.storage);
      webApp = createApp(
        webDeps(
          webStores,
          async () => {
            throw new Error('this page needs no Temporal');
          },
          { web: { publicUrl: webUrl, sessionSecret: SECRET, admin: ADMIN } },
        ),
      );
      // The worker: what the worker process builds from the same configuration.
      const logged: string[] = [];
      const log = createLogger(
        'worker',
        'info',
        new Writable({ write: (chunk: Buffer, _e, done) => (logged.push(chunk.toString('utf8')), done()) }),
      );
      const deps = createDeps(config, log);
      const c = await deps.stores.configurations.create({
        esp: 'sandbox',
        accountLabel: 'Alerted roasters',
        espAccountId: 'acct_alerted',
        fieldName: 'lcee',
        status: 'active',
        maintenance: true,
      });
      const activities = createActivities(deps);
      const markNeedsReauth = (reason: string) =>
        new MockActivityEnvironment().run(activities.markNeedsReauth, { configurationId: c.id, reason });
      await markNeedsReauth('401 from the ESP');

      assert.deepEqual(
        hooks.map((x) => x.status),
        ['needs_reauth'],
      );
      const link = hooks[0]!.publisherUrl!;
      assert.match(link, new RegExp(`^${webUrl}/publisher/${c.id}/0\\.[\\w-]{43}$`));
      assert.ok(hooks[0]!.text.endsWith(`Publisher page (to reconnect): ${link}`), hooks[0]!.text);
      const opened = await fetch(link);
      assert.equal(opened.status, 200);
      assert.match(await opened.text(), /<p id="connection">Needs you to sign in again/);
      const token = link.slice(link.lastIndexOf('/') + 1);
      assert.ok(
        logged.some((l) => l.includes('ALERT')),
        'the alert is logged',
      );
      assert.ok(!logged.some((l) => l.includes(token)), 'the link is not in the log');

      // Revoked (on the web server): the alert's link answers 404, and the next alert's link opens.
      await revokeLinks(webStores.blobs, c.id);
      assert.equal((await fetch(link)).status, 404);
      await deps.stores.configurations.update(c.id, () => ({ status: 'active' }));
      await markNeedsReauth('401 again');
      const next = hooks[1]!.publisherUrl!;
      assert.notEqual(next, link);
      assert.equal((await fetch(next)).status, 200);
      assert.equal((await fetch(link)).status, 404, 'the revoked link stays revoked');
    } finally {
      await closeServer(web);
      await closeServer(receiver);
    }
  });

  it('signs with one key however many processes make it at once (the secret store keeps the first)', async () => {
    const dir = await tempDir();
    const storage = {
      kind: 'local' as const,
      blobDir: join(dir, 'blobs'),
      secretDir: join(dir, 'secrets'),
      secretKeyFile: join(dir, 'secret.key'),
    };
    const processes = Array.from({ length: 6 }, () => createStores(storage));
    const paths = await Promise.all(processes.map((s) => publisherPath(s, 'cfg_race00000001')));
    assert.equal(new Set(paths).size, 1, paths.join('\n'));
    const token = paths[0]!.split('/').at(-1)!;
    assert.equal(await linkValid(processes[0]!, 'cfg_race00000001', token), true);
    // docs/operations.md: with the key deleted (and processes restarted), a new key is made and
    // every link given out so far stops working.
    await processes[0]!.secrets.delete(PUBLISHER_LINK_KEY_SECRET_ID);
    const restarted = createStores(storage);
    assert.equal(await linkValid(restarted, 'cfg_race00000001', token), false);
    assert.notEqual(await publisherPath(restarted, 'cfg_race00000001'), paths[0]);
  });
});
