// Every path of the connect flow and the admin page, over HTTP (supertest), with a real Sandbox ESP,
// real stores and the shared Temporal dev server for the first run.
import { strict as assert } from 'node:assert';
import request from 'supertest';
import type { Alert } from '../../src/alerts';
import { auditPage } from '../../src/audit/log';
import { createLogger } from '../../src/logger';
import { SandboxProcessor } from '../../src/processors/sandbox';
import { ProcessorRegistry } from '../../src/processors/registry';
import { SandboxList, SandboxState } from '../../src/sandbox/state';
import type { Stores } from '../../src/storage';
import { constantTimeEqual } from '../../src/lib/constant-time-equal';
import { isAdmin } from '../../src/web/admin-auth';
import { createApp } from '../../src/web/app';
import type { WebDeps } from '../../src/web/deps';
import { PendingFlows } from '../../src/web/pending';
import { publisherPath } from '../../src/publisher-link';
import { Signer, STATE_TTL_MS } from '../../src/web/security';
import { answerSandboxConsent } from '../../src/sandbox/consent';
import { startSandbox } from '../processors/sandbox-harness';
import { endRunsIn, temporalEnv } from '../support/temporal';
import { tempStores } from '../support/tmp';
import { webDeps } from '../support/web';

const SECRET = 'test-session-secret-0123456789-abcdef';

async function setup(extra: Partial<WebDeps['web']> = {}, sandboxUrl?: string) {
  const alerts: Alert[] = [];
  const sandbox = await startSandbox(SandboxState.demo(20));
  const stores = await tempStores();
  const processor = new SandboxProcessor(
    { secrets: stores.secrets },
    { url: sandboxUrl ?? sandbox.url, rateLimit: { requests: 100, perMs: 1000 }, concurrency: 4 },
  );
  const env = await temporalEnv();
  const app = createApp(
    webDeps(stores, async () => env.connection, {
      processors: new ProcessorRegistry([processor]),
      alerts: async (alert) => void alerts.push(alert),
      web: { publicUrl: 'http://localhost:3000', sessionSecret: SECRET, admin: {}, ...extra },
    }),
  );
  return {
    sandbox,
    stores,
    app,
    alerts,
    agent: request.agent(app),
    /**
     * Stops the Sandbox and ends the first runs the app started: they wait on the real task queue
     * (no worker here), where a later test's worker would pick them up against its own stores.
     */
    async stop() {
      await endRunsIn(stores);
      await sandbox.stop();
    },
  };
}

const field = (html: string, name: string) => new RegExp(`name="${name}" value="([^"]+)"`).exec(html)?.[1];

async function approveOnSandbox(
  sandboxUrl: string,
  authorizeUrl: string,
  decision: 'approve' | 'deny' = 'approve',
) {
  const back = await answerSandboxConsent(sandboxUrl, authorizeUrl, { account: 'acct_demo', decision });
  assert.equal(back.origin + back.pathname, 'http://localhost:3000/auth/sandbox/callback');
  return back.pathname + back.search;
}

/** The API-key path with the demo key, choosing list_newsletter. */
async function connectWithKey(agent: ReturnType<typeof request.agent>) {
  const form = await agent.get('/auth/sandbox/key');
  const lists = await agent
    .post('/auth/sandbox/key')
    .type('form')
    .send({ _csrf: field(form.text, '_csrf'), apiKey: 'sandbox-demo-key' });
  return agent
    .post('/auth/sandbox/list')
    .type('form')
    .send({ _csrf: field(lists.text, '_csrf'), nonce: field(lists.text, 'nonce'), listId: 'list_newsletter' })
    .expect(200);
}

async function configurations(stores: Stores) {
  return stores.configurations.list();
}

describe('web: connect flow', function () {
  this.timeout(60_000);
  let s: Awaited<ReturnType<typeof setup>>;
  beforeEach(async () => {
    s = await setup();
  });
  afterEach(() => s.stop());

  it('lists the ESPs with a Connect action, with security headers', async () => {
    const res = await s.agent.get('/').expect(200);
    assert.match(res.text, /href="\/auth\/sandbox\/start">Connect Sandbox ESP/);
    assert.match(res.text, /href="\/auth\/sandbox\/key"/);
    assert.equal(res.headers['x-content-type-options'], 'nosniff');
    assert.match(res.headers['content-security-policy']!, /default-src 'self'/);
  });

  it('connects over OAuth: signed state, PKCE, list choice, success page with the merge tag, first run', async () => {
    const start = await s.agent.get('/auth/sandbox/start').expect(302);
    const authorize = new URL(start.headers.location!);
    assert.equal(authorize.origin, s.sandbox.url);
    assert.ok(authorize.searchParams.get('code_challenge'));
    assert.match(String(start.headers['set-cookie']), /espresso_flow=.*HttpOnly.*SameSite=Lax/i);
    const callback = await approveOnSandbox(s.sandbox.url, start.headers.location!);
    const listPage = await s.agent.get(callback).expect(200);
    assert.match(listPage.text, /Morning Newsletter/);
    assert.match(listPage.text, /Offers &amp; Events/);
    const done = await s.agent
      .post('/auth/sandbox/list')
      .type('form')
      .send({
        _csrf: field(listPage.text, '_csrf'),
        nonce: field(listPage.text, 'nonce'),
        listId: 'list_newsletter',
      })
      .expect(200);
    assert.match(done.text, /Connected: Demo Coffee Roasters · Morning Newsletter/);
    assert.match(done.text, /lctg=\{\{contact\.lcee\}\}/);
    const [configuration] = await configurations(s.stores);
    assert.equal(configuration!.status, 'active');
    assert.equal(configuration!.espListId, 'list_newsletter');
    const credentials = JSON.parse(await s.stores.secrets.get(configuration!.credentialsSecretId));
    assert.equal(credentials.kind, 'oauth2');
    assert.ok(!done.text.includes(credentials.accessToken), 'token on the page');
    const { client } = await temporalEnv();
    const runs = [];
    for await (const wf of client.workflow.list({
      query: `WorkflowType = 'configurationSyncWorkflow' AND WorkflowId STARTS_WITH 'sync/${configuration!.id}/'`,
    }))
      runs.push(wf);
    assert.equal(runs.length, 1);
    assert.match(runs[0]!.workflowId, /first-run-/);

    // The callback cannot be replayed.
    const replay = await s.agent.get(callback).expect(400);
    assert.match(replay.text, /expired/);
    assert.equal((await configurations(s.stores)).length, 1);
  });

  it('README: re-connecting never enables a configuration an operator disabled: the page says so and no run starts', async () => {
    await connectWithKey(s.agent);
    const [configuration] = await configurations(s.stores);
    const id = configuration!.id;
    const { client } = await temporalEnv();
    const runs = async () => {
      const ids = [];
      for await (const wf of client.workflow.list({ query: `WorkflowId STARTS_WITH 'sync/${id}/'` }))
        ids.push(wf.workflowId);
      return ids;
    };
    const first = await runs();
    assert.equal(first.length, 1, 'the first connect started its first run');
    await endRunsIn(s.stores); // a run still open would keep a second one from starting anyway
    await s.stores.configurations.update(id, () => ({ status: 'disabled' }));

    const again = await connectWithKey(s.agent);
    assert.match(again.text, /Re-connected: Demo Coffee Roasters/);
    assert.match(again.text, /disabled by an operator, so it stays disabled/);
    assert.equal((await s.stores.configurations.get(id)).status, 'disabled');
    assert.deepEqual(await runs(), first, 'a run was started');
  });

  it('README: connecting again resumes a configuration its publisher disconnected, never one an operator disabled', async () => {
    await connectWithKey(s.agent);
    const [configuration] = await configurations(s.stores);
    const id = configuration!.id;
    await endRunsIn(s.stores);
    const disconnect = async () => {
      const path = await publisherPath(s.stores, id);
      const confirm = await s.agent.get(`${path}/disconnect`).expect(200);
      await s.agent
        .post(`${path}/disconnect`)
        .type('form')
        .send({ _csrf: field(confirm.text, '_csrf') })
        .expect(200);
      assert.equal((await s.stores.configurations.get(id)).status, 'disabled');
    };

    await disconnect();
    const back = await connectWithKey(s.agent);
    assert.match(back.text, /Re-connected: Demo Coffee Roasters/);
    assert.doesNotMatch(back.text, /stays disabled/);
    assert.equal((await s.stores.configurations.get(id)).status, 'active');
    await endRunsIn(s.stores);

    // An operator's disable outlasts the publisher's disconnect.
    await s.stores.configurations.update(id, () => ({ status: 'disabled' }));
    await disconnect();
    const again = await connectWithKey(s.agent);
    assert.match(again.text, /disabled by an operator, so it stays disabled/);
    assert.equal((await s.stores.configurations.get(id)).status, 'disabled');
  });

  it('refuses tampered, expired and other-browser states with 400 and stores nothing', async () => {
    const start = await s.agent.get('/auth/sandbox/start').expect(302);
    const callback = await approveOnSandbox(s.sandbox.url, start.headers.location!);
    const url = new URL(callback, 'http://x');
    const state = url.searchParams.get('state')!;

    const tampered = state.slice(0, -3) + (state.endsWith('AAA') ? 'BBB' : 'AAA');
    await s.agent.get(`/auth/sandbox/callback?code=x&state=${encodeURIComponent(tampered)}`).expect(400);
    // Another browser (no flow cookie) with the genuine state and code.
    await request(s.app).get(callback).expect(400);
    // A state signed correctly but expired.
    const binding = /espresso_flow=([^;]+)/.exec(String(start.headers['set-cookie']))![1]!;
    const old = new Signer(SECRET).state('abcdefghijklmnop', 'sandbox', binding, {
      now: Date.now() - 11 * 60_000,
    });
    const expired = await s.agent
      .get(`/auth/sandbox/callback?code=x&state=${encodeURIComponent(old)}`)
      .expect(400);
    assert.match(expired.text, /expired/);
    assert.doesNotMatch(expired.text, /Error|at .*\.js/);
    await s.agent.get('/auth/sandbox/callback').expect(400);
    assert.equal((await configurations(s.stores)).length, 0);
  });

  it('explains a denied consent and stores nothing', async () => {
    const start = await s.agent.get('/auth/sandbox/start').expect(302);
    const callback = await approveOnSandbox(s.sandbox.url, start.headers.location!, 'deny');
    const res = await s.agent.get(callback).expect(400);
    assert.match(res.text, /You did not give access/);
    assert.match(res.text, /Try again/);
    assert.equal((await configurations(s.stores)).length, 0);
  });

  it('connects with an API key through a CSRF-protected form, without echoing the key', async () => {
    const form = await s.agent.get('/auth/sandbox/key').expect(200);
    const csrf = field(form.text, '_csrf')!;
    await s.agent.post('/auth/sandbox/key').type('form').send({ apiKey: 'sandbox-demo-key' }).expect(403);
    const bad = await s.agent
      .post('/auth/sandbox/key')
      .type('form')
      .send({ _csrf: csrf, apiKey: 'sk_PLANTED_wrong' })
      .expect(400);
    assert.match(bad.text, /did not accept the credentials/);
    assert.ok(!bad.text.includes('sk_PLANTED_wrong'));
    const empty = await s.agent
      .post('/auth/sandbox/key')
      .type('form')
      .send({ _csrf: csrf, apiKey: '  ' })
      .expect(400);
    assert.match(empty.text, /<code>apiKey<\/code>: is required/);
    const lists = await s.agent
      .post('/auth/sandbox/key')
      .type('form')
      .send({ _csrf: csrf, apiKey: 'sandbox-demo-key' })
      .expect(200);
    const done = await s.agent
      .post('/auth/sandbox/list')
      .type('form')
      .send({ _csrf: field(lists.text, '_csrf'), nonce: field(lists.text, 'nonce'), listId: 'list_offers' })
      .expect(200);
    assert.match(done.text, /Offers &amp; Events/);
    assert.ok(!done.text.includes('sandbox-demo-key'));
    // The publisher's private page, linked from the success page, opens without signing in.
    const link =
      /id="publisher-link" href="http:\/\/localhost:3000(\/publisher\/cfg_\w+\/0\.[\w-]{43})"/.exec(
        done.text,
      );
    assert.ok(link, 'the success page links the publisher page');
    assert.match((await s.agent.get(link[1]!).expect(200)).text, /id="merge-tag"/);
    assert.equal((await configurations(s.stores))[0]!.espListId, 'list_offers');
  });

  it('escapes what the ESP says about the account (a <script> in the account name)', async () => {
    s.sandbox.state.addAccount('acct_evil', '<script>alert(1)</script>', ['evil-key-12345']);
    s.sandbox.state.accounts
      .get('acct_evil')!
      .lists.set('list_x', new SandboxList('list_x', '<img src=x onerror=alert(2)>'));
    const form = await s.agent.get('/auth/sandbox/key');
    const done = await s.agent
      .post('/auth/sandbox/key')
      .type('form')
      .send({ _csrf: field(form.text, '_csrf'), apiKey: 'evil-key-12345' })
      .expect(200);
    assert.ok(!done.text.includes('<script>alert(1)'), 'unescaped script');
    assert.ok(!done.text.includes('<img src=x'), 'unescaped img');
    assert.match(done.text, /&lt;script&gt;alert\(1\)&lt;\/script&gt;/);
  });

  it('re-authorizes a needs_reauth configuration in place, keeping its id', async () => {
    await connectWithKey(s.agent);
    const [original] = await configurations(s.stores);
    await s.stores.configurations.update(original!.id, () => ({
      status: 'needs_reauth',
      statusReason: 'ESP answered 401',
    }));
    const reauthForm = await s.agent.get(`/auth/sandbox/key?reauthorize=${original!.id}`).expect(200);
    assert.equal(field(reauthForm.text, 'reauthorize'), original!.id);
    const done = await s.agent
      .post('/auth/sandbox/key')
      .type('form')
      .send({ _csrf: field(reauthForm.text, '_csrf'), apiKey: 'sandbox-demo-key', reauthorize: original!.id })
      .expect(200);
    assert.match(done.text, /Re-connected/);
    assert.deepEqual(
      s.alerts.map((a) => [a.configurationId, a.status]),
      [[original!.id, 'active']],
      'one recovery alert',
    );
    const after = await configurations(s.stores);
    assert.equal(after.length, 1);
    assert.equal(after[0]!.id, original!.id);
    assert.equal(after[0]!.status, 'active');
    const { entries } = await auditPage(s.stores.blobs, { limit: 10 });
    assert.deepEqual(
      entries.map((e) => [e.action, e.configurationId, e.actor]),
      [
        ['reauthorize', original!.id, 'publisher sandbox account acct_demo'],
        ['connect', original!.id, 'publisher sandbox account acct_demo'],
      ],
    );
    await s.agent.get('/auth/sandbox/key?reauthorize=../../etc').expect(400);
  });

  it('answers unknown ESPs with 404 and never redirects off-site', async () => {
    await s.agent.get('/auth/nope/start').expect(404);
    const res = await s.agent.get('/auth/sandbox/start?redirect=https://evil.example').expect(302);
    assert.ok(res.headers.location!.startsWith(s.sandbox.url));
  });
});

describe('web: failures and limits', function () {
  this.timeout(60_000);

  it('says the ESP is unreachable, in plain words, when it does not answer', async () => {
    const s = await setup({}, 'http://127.0.0.1:1');
    try {
      const form = await s.agent.get('/auth/sandbox/key');
      const res = await s.agent
        .post('/auth/sandbox/key')
        .type('form')
        .send({ _csrf: field(form.text, '_csrf'), apiKey: 'sandbox-demo-key' })
        .expect(502);
      assert.match(res.text, /is not answering/);
      assert.doesNotMatch(res.text, /ECONNREFUSED|127\.0\.0\.1:1/);
    } finally {
      await s.stop();
    }
  });

  it('counts the connecting address, not a forged X-Forwarded-For, unless a proxy is trusted', async () => {
    const post = async (s: Awaited<ReturnType<typeof setup>>, i: number) => {
      const form = await s.agent.get('/auth/sandbox/key');
      return s.agent
        .post('/auth/sandbox/key')
        .set('x-forwarded-for', `203.0.113.${i}`)
        .type('form')
        .send({ _csrf: field(form.text, '_csrf'), apiKey: 'wrong-key' });
    };
    const direct = await setup({ postsPerMinute: 3 });
    try {
      const statuses = [];
      for (let i = 1; i <= 4; i++) statuses.push((await post(direct, i)).status);
      assert.deepEqual(statuses, [400, 400, 400, 429], 'a new X-Forwarded-For on each post lifted the limit');
    } finally {
      await direct.stop();
    }
    // Behind a trusted proxy (here: the test's own loopback connection) each forwarded client counts alone.
    const proxied = await setup({ postsPerMinute: 3, trustProxy: 'loopback' });
    try {
      for (let i = 1; i <= 4; i++) assert.equal((await post(proxied, i)).status, 400);
    } finally {
      await proxied.stop();
    }
  });

  it('stores nothing for an OAuth start, and sweeps every flow record and secret once expired', async () => {
    const s = await setup({ postsPerMinute: 1_000 });
    try {
      const pendingFiles = async () => ({
        records: await s.stores.blobs.list('web/pending/'),
        secrets: (await s.stores.secrets.list()).filter((id) => id.startsWith('pending/')),
      });
      // 100 abandoned starts: nothing lasting is written before the ESP answers a callback.
      for (let i = 0; i < 100; i++) await s.agent.get('/auth/sandbox/start').expect(302);
      assert.deepEqual(await pendingFiles(), { records: [], secrets: [] });

      // Flows that got further and were abandoned on the list page (OAuth and API key), a
      // completed callback's used state, and a leftover secret of an older version (no record).
      for (let i = 0; i < 3; i++) {
        const start = await s.agent.get('/auth/sandbox/start').expect(302);
        await s.agent.get(await approveOnSandbox(s.sandbox.url, start.headers.location!)).expect(200);
      }
      const form = await s.agent.get('/auth/sandbox/key');
      await s.agent
        .post('/auth/sandbox/key')
        .type('form')
        .send({ _csrf: field(form.text, '_csrf'), apiKey: 'sandbox-demo-key' })
        .expect(200);
      await s.stores.secrets.put('pending/leftover-from-v1', '{}');
      const waiting = await pendingFiles();
      assert.equal(waiting.records.length, 4 + 3, 'list pages and used callback states');
      assert.equal(waiting.secrets.length, 4 + 1, 'list pages, and the leftover');

      const flows = new PendingFlows(s.stores.blobs, s.stores.secrets);
      // Within the state's lifetime nothing but the leftover goes: the list pages still work.
      assert.equal(await flows.sweep({ leftovers: true }), 1);
      assert.equal((await pendingFiles()).records.length, 7);
      // Once the states have expired, nothing is left.
      assert.equal(await flows.sweep({ now: Date.now() + STATE_TTL_MS + 1_000 }), 7);
      assert.deepEqual(await pendingFiles(), { records: [], secrets: [] });
    } finally {
      await s.stop();
    }
  });

  it('sweeps expired flows by itself, on a schedule, and keeps live ones', async () => {
    const stores = await tempStores();
    const flows = new PendingFlows(stores.blobs, stores.secrets);
    const flow = (createdAt: number) => ({
      esp: 'sandbox',
      binding: 'b',
      stage: 'choose_list' as const,
      createdAt,
    });
    const credentials = { kind: 'apiKey' as const, apiKey: 'validated-key' };
    const stop = flows.sweepEvery(200, createLogger('test', 'silent'));
    try {
      // Written after the sweep at start: only the sweeps that follow can remove them. Flows
      // abandoned on the list page long ago, and one a publisher is on now.
      for (let i = 0; i < 20; i++)
        await flows.put(`expired-flow-${i}`, flow(Date.now() - STATE_TTL_MS - 1_000), { credentials });
      await flows.put('live-flow-0', flow(Date.now()), { credentials });
      await new Promise((r) => setTimeout(r, 1_000));
    } finally {
      stop();
    }
    assert.deepEqual(await stores.blobs.list('web/pending/'), ['web/pending/live-flow-0.json']);
    assert.deepEqual(
      (await stores.secrets.list()).filter((id) => id.startsWith('pending/')),
      ['pending/live-flow-0'],
    );
  });

  it('rate-limits OAuth starts per client like the key form', async () => {
    const s = await setup({ postsPerMinute: 3 });
    try {
      for (let i = 0; i < 3; i++) await s.agent.get('/auth/sandbox/start').expect(302);
      const limited = await s.agent.get('/auth/sandbox/start').expect(429);
      assert.match(limited.text, /Too many attempts/);
    } finally {
      await s.stop();
    }
  });

  it('rate-limits POSTs per IP', async () => {
    const s = await setup({ postsPerMinute: 3 });
    try {
      const form = await s.agent.get('/auth/sandbox/key');
      const csrf = field(form.text, '_csrf');
      for (let i = 0; i < 3; i++)
        await s.agent
          .post('/auth/sandbox/key')
          .type('form')
          .send({ _csrf: csrf, apiKey: 'wrong-key' })
          .expect(400);
      const limited = await s.agent
        .post('/auth/sandbox/key')
        .type('form')
        .send({ _csrf: csrf, apiKey: 'wrong-key' })
        .expect(429);
      assert.match(limited.text, /Too many attempts/);
    } finally {
      await s.stop();
    }
  });
});

describe('web: admin page', function () {
  this.timeout(60_000);

  it('is off, and says so, when no admin credentials are configured', async () => {
    const s = await setup();
    try {
      const res = await s.agent.get('/admin').expect(503);
      assert.match(res.text, /Admin is off/);
    } finally {
      await s.stop();
    }
  });

  it('asks for credentials, lists configurations with their last run, and acts on them', async () => {
    const s = await setup({
      admin: { user: 'ops', password: 'correct horse battery', token: 'tok_0123456789abcdef0123456789' },
    });
    try {
      await connectWithKey(s.agent);
      const [configuration] = await configurations(s.stores);

      const challenge = await s.agent.get('/admin').expect(401);
      assert.match(String(challenge.headers['www-authenticate']), /Basic/);
      await s.agent.get('/admin').auth('ops', 'wrong password!!').expect(401);
      await request(s.app)
        .get('/admin')
        .set('authorization', 'Bearer tok_0123456789abcdef0123456789')
        .expect(200);
      const admin = await s.agent.get('/admin').auth('ops', 'correct horse battery').expect(200);
      assert.match(admin.text, new RegExp(`data-configuration="${configuration!.id}"`));
      assert.match(admin.text, /class="status">active/);
      assert.match(
        admin.text,
        new RegExp(`http://localhost:3000/auth/sandbox/start\\?reauthorize=${configuration!.id}`),
      );

      const csrf = field(admin.text, '_csrf')!;
      await s.agent
        .post(`/admin/configurations/${configuration!.id}/disable`)
        .auth('ops', 'correct horse battery')
        .type('form')
        .send({})
        .expect(403);
      const disabled = await s.agent
        .post(`/admin/configurations/${configuration!.id}/disable`)
        .auth('ops', 'correct horse battery')
        .type('form')
        .send({ _csrf: csrf })
        .expect(303);
      assert.equal(disabled.headers.location, '/admin?done=disable');
      assert.equal((await s.stores.configurations.get(configuration!.id)).status, 'disabled');
      // Both actions are in the audit log, newest first, with who and from where; /admin shows it.
      const audit = await s.agent.get('/admin/audit').auth('ops', 'correct horse battery').expect(200);
      const entries = [
        ...audit.text.matchAll(
          /<tr><td>[^<]+<\/td><td>([^<]+)<\/td><td><code>([^<]+)<\/code><\/td>\n<td>.*?<\/td><td>([^<]+)<\/td>/g,
        ),
      ].map((m) => [m[1], m[2], m[3]!.replace(/^::ffff:/, '')]);
      assert.deepEqual(entries, [
        ['operator ops', 'disable', '127.0.0.1'],
        ['publisher sandbox account acct_demo', 'connect', '127.0.0.1'],
      ]);
      const recent = await s.agent.get('/admin').auth('ops', 'correct horse battery').expect(200);
      assert.match(recent.text, /<h2>Recent actions<\/h2><table id="audit">.*operator ops/s);
      await s.agent.get('/admin/audit?after=x').auth('ops', 'correct horse battery').expect(400);
      await s.agent.get('/admin/audit').expect(401);
      const metrics = await request(s.app)
        .get('/metrics')
        .set('authorization', 'Bearer tok_0123456789abcdef0123456789')
        .expect(200);
      assert.match(
        metrics.text,
        /espresso_web_requests_total\{method="POST",route="\/auth\/:esp\/key",status="200"\} 1/,
      );
      assert.match(metrics.text, /espresso_web_process_resident_memory_bytes/);
      await request(s.app).get('/metrics').expect(401);
      await s.agent
        .post(`/admin/configurations/cfg_nope00000000/enable`)
        .auth('ops', 'correct horse battery')
        .type('form')
        .send({ _csrf: csrf })
        .expect(404);
    } finally {
      await s.stop();
    }
  });
});

describe('web: admin actions need the CSRF token of the browser session that sends them', function () {
  this.timeout(60_000);
  const admin = { user: 'ops', password: 'correct horse battery' };
  /** Every action form the admin page offers: `/admin/configurations/<id>/<action>`. */
  const actionsOn = (html: string) =>
    [...html.matchAll(/<form[^>]* method="post" action="(\/admin\/configurations\/[^"]+)"/g)].map(
      (m) => m[1]!,
    );

  it("refuses every action with another browser session's token, with none, and without the session cookie; its own token works", async () => {
    const s = await setup({ admin });
    try {
      await connectWithKey(s.agent);
      const [configuration] = await configurations(s.stores);
      const id = configuration!.id;
      // Two browsers signed in as the admin: each gets its own CSRF cookie and token.
      const mine = request.agent(s.app);
      const theirs = request.agent(s.app);
      const adminPage = async (agent: typeof mine) =>
        (await agent.get('/admin').auth(admin.user, admin.password).expect(200)).text;
      const post = (agent: typeof mine | ReturnType<typeof request>, path: string, body: object) =>
        agent.post(path).auth(admin.user, admin.password).type('form').send(body);
      const theirToken = field(await adminPage(theirs), '_csrf')!;
      const refusedEach = async (actions: string[]) => {
        for (const path of actions) {
          for (const [how, sent] of [
            ["another session's token", post(mine, path, { _csrf: theirToken })],
            ['no token', post(mine, path, {})],
            ['an empty token', post(mine, path, { _csrf: '' })],
            ['no session cookie', post(request(s.app), path, { _csrf: theirToken })],
          ] as const) {
            const res = await sent;
            assert.equal(res.status, 403, `${path} with ${how}`);
            assert.match(res.text, /This form has expired/);
          }
        }
      };

      let page = await adminPage(mine);
      const ownToken = field(page, '_csrf')!;
      assert.notEqual(ownToken, theirToken);
      const whileActive = actionsOn(page);
      assert.deepEqual(
        whileActive.map((a) => a.split('/').pop()),
        ['run', 'dry-run', 'disable'],
      );
      await refusedEach(whileActive);
      assert.equal((await s.stores.configurations.get(id)).status, 'active', 'nothing was disabled');

      // Its own token: the action is carried out (a run already in progress is a 409, not a 403).
      await post(mine, `/admin/configurations/${id}/disable`, { _csrf: ownToken }).expect(303);
      assert.equal((await s.stores.configurations.get(id)).status, 'disabled');
      page = await adminPage(mine);
      const whileDisabled = actionsOn(page);
      assert.ok(whileDisabled.includes(`/admin/configurations/${id}/enable`), whileDisabled.join(', '));
      await refusedEach(whileDisabled);
      assert.equal((await s.stores.configurations.get(id)).status, 'disabled', 'nothing was enabled');
      await post(mine, `/admin/configurations/${id}/enable`, { _csrf: ownToken }).expect(303);
      assert.equal((await s.stores.configurations.get(id)).status, 'active');
      for (const action of ['run', 'dry-run']) {
        const res = await post(mine, `/admin/configurations/${id}/${action}`, { _csrf: ownToken });
        assert.ok([303, 409].includes(res.status), `${action} with its own token: ${res.status}`);
      }
    } finally {
      await s.stop();
    }
  });
});

describe('web: enabling a configuration in needs_reauth', function () {
  this.timeout(60_000);
  const admin = { user: 'ops', password: 'correct horse battery' };

  it('enables it only once its ESP accepts the stored credentials again, with one recovery alert', async () => {
    const s = await setup({ admin });
    try {
      await connectWithKey(s.agent);
      const [configuration] = await configurations(s.stores);
      const id = configuration!.id;
      await s.stores.configurations.update(id, () => ({
        status: 'needs_reauth',
        statusReason: 'ESP answered 401',
      }));
      const account = s.sandbox.state.accounts.get('acct_demo')!;
      const keys = account.apiKeys.splice(0); // the key is revoked
      const page = await s.agent.get('/admin').auth(admin.user, admin.password).expect(200);
      const enable = () =>
        s.agent
          .post(`/admin/configurations/${id}/enable`)
          .auth(admin.user, admin.password)
          .type('form')
          .send({ _csrf: field(page.text, '_csrf') });
      const refused = await enable().expect(409);
      assert.match(refused.text, /Sandbox ESP still refuses the stored credentials/);
      assert.equal((await s.stores.configurations.get(id)).status, 'needs_reauth');
      assert.equal(s.alerts.length, 0, 'no alert while it is still refused');

      account.apiKeys.push(...keys); // the publisher fixed it on the ESP's side
      await enable().expect(303);
      assert.equal((await s.stores.configurations.get(id)).status, 'active');
      assert.deepEqual(
        s.alerts.map((a) => [a.configurationId, a.status]),
        [[id, 'active']],
        'one recovery alert',
      );
    } finally {
      await s.stop();
    }
  });
});

describe('admin authentication', () => {
  const admin = { user: 'ops', password: 'correct horse battery', token: 't'.repeat(32) };
  const basic = (s: string) => `Basic ${Buffer.from(s).toString('base64')}`;

  it('accepts the user with the password, or the token; nothing else, whatever the lengths', () => {
    assert.equal(isAdmin(admin, basic('ops:correct horse battery')), true);
    assert.equal(isAdmin(admin, `Bearer ${'t'.repeat(32)}`), true);
    for (const wrong of [
      basic('ops:correct horse batter'),
      basic('ops:correct horse battery!'),
      basic('opz:correct horse battery'),
      basic('ops'),
      basic(':correct horse battery'),
      basic(''),
      `Bearer ${'t'.repeat(31)}`,
      'Bearer ',
      '',
    ]) {
      assert.equal(isAdmin(admin, wrong), false, wrong);
    }
    assert.equal(constantTimeEqual('abc', 'abc'), true);
    assert.equal(constantTimeEqual('abc', 'abcd'), false);
  });
});
