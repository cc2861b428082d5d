// The Sandbox's separate listing and writing limits, its latency tail, and the named ESP profiles:
// enforced on the server (429 with Retry-After when crossed, never when kept), and kept by the
// Sandbox processor when it is told them.
import { strict as assert } from 'node:assert';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { loadConfig } from '../src/config';
import { SandboxProcessor, type SandboxProcessorOptions } from '../src/processors/sandbox';
import type { ProcessorTarget } from '../src/processors/types';
import { sandboxAdmin } from '../src/sandbox/admin';
import { drawLatency } from '../src/sandbox/latency';
import { clientLimitsOf, PROFILE_NAMES, SANDBOX_PROFILES } from '../src/sandbox/profiles';
import { initialSandboxState } from '../src/sandbox/setup';
import { SandboxList, SandboxState } from '../src/sandbox/state';
import { LocalSecretStore } from '../src/storage/local-secret-store';
import { startSandbox } from './processors/sandbox-harness';
import { tempDir } from './support/tmp';

type Sandbox = Awaited<ReturnType<typeof startSandbox>>;

const api = (sandbox: Sandbox, path: string, init: RequestInit = {}) =>
  fetch(`${sandbox.url}${path}`, {
    ...init,
    headers: { 'x-api-key': 'sandbox-demo-key', 'content-type': 'application/json', ...init.headers },
  });

const listing = (sandbox: Sandbox) => api(sandbox, '/v1/lists/list_newsletter/contacts?limit=10');
const writing = (sandbox: Sandbox, index = 0) =>
  api(sandbox, '/v1/lists/list_newsletter/contacts/batch', {
    method: 'POST',
    body: JSON.stringify({
      updates: [{ id: SandboxList.contactId(index), fields: { lcee: `value_${index}` } }],
    }),
  });
const other = (sandbox: Sandbox) => api(sandbox, '/v1/account');
const send = { listing, writing, other };

async function patchSettings(sandbox: Sandbox, settings: unknown) {
  const res = await sandboxAdmin(sandbox, '/accounts/acct_demo/settings', {
    method: 'PATCH',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(settings),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

/** Status codes of `n` requests of one kind sent at once. */
async function burst(sandbox: Sandbox, kind: keyof typeof send, n: number): Promise<Response[]> {
  return Promise.all(Array.from({ length: n }, (_, i) => send[kind](sandbox, i)));
}

const codes = (responses: Response[]) => responses.map((r) => r.status).sort();

describe('Sandbox ESP: separate limits, latency and profiles', () => {
  let sandbox: Sandbox;
  beforeEach(async () => {
    sandbox = await startSandbox(SandboxState.demo(300));
    await api(sandbox, '/v1/lists/list_newsletter/fields', {
      method: 'POST',
      body: JSON.stringify({ key: 'lcee' }),
    });
  });
  afterEach(() => sandbox.stop());

  for (const [kind, unaffected] of [
    ['listing', 'writing'],
    ['writing', 'listing'],
  ] as const) {
    it(`${kind}: past its rate, 429 with Retry-After; other requests pass; kept, never refused`, async () => {
      assert.equal(
        (await patchSettings(sandbox, { limits: { [kind]: { requestsPerSecond: 3 } } })).status,
        200,
      );
      const first = await burst(sandbox, kind, 5);
      assert.deepEqual(codes(first), [200, 200, 200, 429, 429]);
      const refused = first.find((r) => r.status === 429)!;
      assert.equal(refused.headers.get('retry-after'), '1');
      const error = ((await refused.json()) as { error: { code: string; message: string } }).error;
      assert.equal(error.code, 'rate_limited');
      assert.match(error.message, new RegExp(`at most 3 ${kind} requests per 1 s`));
      // The other endpoint and the rest of the API have no such limit.
      assert.deepEqual(codes(await burst(sandbox, unaffected, 5)), [200, 200, 200, 200, 200]);
      assert.deepEqual(codes(await burst(sandbox, 'other', 5)), [200, 200, 200, 200, 200]);
      // Kept: three a second, spaced, are all answered.
      await new Promise((r) => setTimeout(r, 1_000));
      for (let i = 0; i < 6; i++) {
        assert.equal((await send[kind](sandbox, i)).status, 200, `request ${i}`);
        await new Promise((r) => setTimeout(r, 350));
      }
    });

    it(`${kind}: past its concurrency, 429 too_many_concurrent_requests; within it, answered`, async () => {
      await patchSettings(sandbox, { limits: { [kind]: { concurrency: 2 } }, faults: { latencyMs: 300 } });
      const crossed = await burst(sandbox, kind, 3);
      assert.deepEqual(codes(crossed), [200, 200, 429]);
      const refused = crossed.find((r) => r.status === 429)!;
      assert.equal(refused.headers.get('retry-after'), '1');
      assert.equal(
        ((await refused.json()) as { error: { code: string } }).error.code,
        'too_many_concurrent_requests',
      );
      assert.deepEqual(codes(await burst(sandbox, unaffected, 4)), [200, 200, 200, 200]);
      assert.deepEqual(codes(await burst(sandbox, kind, 2)), [200, 200]);
    });
  }

  it('counts every answered request against its limits, a 400 too, and none refused with 429', async () => {
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
    await patchSettings(sandbox, { limits: { listing: { requestsPerSecond: 2 } } });
    assert.equal((await api(sandbox, '/v1/lists/list_newsletter/contacts?limit=0')).status, 400);
    assert.equal((await listing(sandbox)).status, 200);
    await sleep(500);
    assert.equal((await listing(sandbox)).status, 429); // the 400 counted
    await sleep(650);
    // The first two have left the window; the refused one, half a second old, never entered it.
    assert.deepEqual(codes(await burst(sandbox, 'listing', 2)), [200, 200]);
  });

  it('counts a window longer than a second as one: Retry-After is when its oldest request leaves', async () => {
    await patchSettings(sandbox, { limits: { writing: { requestsPerSecond: 1, windowSeconds: 3 } } });
    assert.deepEqual(codes(await burst(sandbox, 'writing', 4)), [200, 200, 200, 429]);
    const refused = await writing(sandbox);
    assert.equal(refused.status, 429);
    assert.equal(refused.headers.get('retry-after'), '3');
    assert.match(
      ((await refused.json()) as { error: { message: string } }).error.message,
      /3 writing requests per 3 s/,
    );
  });

  it('keeps limits.requestsPerSecond shared by every request, listing and writing included', async () => {
    await patchSettings(sandbox, { limits: { requestsPerSecond: 4, listing: { requestsPerSecond: 10 } } });
    const statuses = [
      ...(await burst(sandbox, 'listing', 2)),
      ...(await burst(sandbox, 'writing', 2)),
      ...(await burst(sandbox, 'other', 1)),
    ].map((r) => r.status);
    assert.deepEqual(statuses, [200, 200, 200, 200, 429]);
  });

  it('adds latency: fixed, or log-normal around the mean with a long tail', async () => {
    const draws = Array.from({ length: 20_000 }, () => drawLatency({ latencyMs: 50, latencySigma: 0.5 }));
    const sorted = draws.sort((a, b) => a - b);
    const mean = draws.reduce((a, b) => a + b, 0) / draws.length;
    const at = (q: number) => sorted[Math.floor(q * sorted.length)]!;
    assert.ok(Math.abs(mean - 50) < 2.5, `mean ${mean}`);
    // Log-normal, sigma 0.5: median 44 ms, p99 about 2.8 times the mean.
    assert.ok(at(0.5) > 41 && at(0.5) < 47, `median ${at(0.5)}`);
    assert.ok(at(0.99) > 115 && at(0.99) < 170, `p99 ${at(0.99)}`);
    assert.equal(drawLatency({ latencyMs: 50, latencySigma: 0 }), 50);
    // Over HTTP: the account's setting, validated.
    await patchSettings(sandbox, { faults: { latencyMs: 120 } });
    const began = performance.now();
    await other(sandbox);
    assert.ok(performance.now() - began >= 115);
    const bad = await patchSettings(sandbox, { faults: { latencySigma: -1 } });
    assert.equal(bad.status, 400);
    assert.match(JSON.stringify(bad.body), /faults\.latencySigma/);
  });

  it('applies a named profile: its limits, page size and batch size', async () => {
    const res = await sandboxAdmin(sandbox, '/accounts', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        id: 'acct_hubspot',
        name: 'HubSpot-like',
        apiKeys: ['hubspot-like-key'],
        lists: [{ id: 'list_h', name: 'H' }],
        settings: { profile: 'hubspot-pro', faults: { latencyMs: 5 } },
      }),
    });
    assert.equal(res.status, 201);
    const account = sandbox.state.accounts.get('acct_hubspot')!;
    assert.equal(account.settings.profile, 'hubspot-pro');
    assert.deepEqual(account.settings.limits, SANDBOX_PROFILES['hubspot-pro'].limits);
    assert.equal(account.settings.faults.latencyMs, 5);
    sandbox.state.seed('acct_hubspot', 'list_h', 300);
    account.lists.get('list_h')!.fields.set('lcee', { key: 'lcee', label: 'lcee', type: 'text' });
    const as = (path: string, init: RequestInit = {}) =>
      fetch(`${sandbox.url}${path}`, {
        ...init,
        headers: { 'x-api-key': 'hubspot-like-key', 'content-type': 'application/json' },
      });
    // Five searches a second: the sixth at once is refused.
    const pages = await Promise.all(
      Array.from({ length: 6 }, () => as('/v1/lists/list_h/contacts?limit=200')),
    );
    assert.deepEqual(codes(pages), [200, 200, 200, 200, 200, 429]);
    await new Promise((r) => setTimeout(r, 1_000));
    assert.equal((await as('/v1/lists/list_h/contacts?limit=201')).status, 400);
    const updates = (n: number) =>
      JSON.stringify({
        updates: Array.from({ length: n }, (_, i) => ({
          id: SandboxList.contactId(i),
          fields: { lcee: 'v_1' },
        })),
      });
    assert.equal(
      (await as('/v1/lists/list_h/contacts/batch', { method: 'POST', body: updates(101) })).status,
      413,
    );
    assert.equal(
      (await as('/v1/lists/list_h/contacts/batch', { method: 'POST', body: updates(100) })).status,
      200,
    );
  });

  it('loads every profile from the config file, and names an unknown one', async () => {
    const dir = await tempDir();
    const configFile = join(dir, 'sandbox.json');
    const accountOf = (profile: string) => ({
      id: `acct_${profile.replace(/-/g, '_')}`,
      name: profile,
      lists: [{ id: 'list_main', name: 'Main', contacts: 10 }],
      settings: { profile },
    });
    await writeFile(configFile, JSON.stringify({ accounts: PROFILE_NAMES.map(accountOf) }));
    const config = { ...loadConfig({}).sandbox, configFile };
    const state = await initialSandboxState(config, 'http://127.0.0.1:3000/auth/sandbox/callback');
    for (const profile of PROFILE_NAMES) {
      const settings = state.accounts.get(accountOf(profile).id)!.settings;
      assert.equal(settings.profile, profile);
      assert.deepEqual(
        { limits: settings.limits, pageSize: settings.pageSize, batchSize: settings.batchSize },
        SANDBOX_PROFILES[profile],
      );
    }
    await writeFile(configFile, JSON.stringify({ accounts: [accountOf('hubspot-free')] }));
    await assert.rejects(initialSandboxState(config, 'http://x/cb'), /accounts\.0\.settings\.profile/);
  });
});

describe('Sandbox processor: keeps within separate listing and writing limits', () => {
  let sandbox: Sandbox;
  afterEach(() => sandbox.stop());

  async function connect(options: Omit<SandboxProcessorOptions, 'url'>) {
    const dir = await tempDir();
    const secrets = new LocalSecretStore(`${dir}/secrets`, { keyFile: `${dir}/key` });
    const processor = new SandboxProcessor({ secrets }, { url: sandbox.url, ...options });
    const target: ProcessorTarget = {
      id: 'cfg_limits0000',
      esp: 'sandbox',
      espAccountId: 'acct_demo',
      espListId: 'list_newsletter',
      fieldName: 'lcee',
      credentialsSecretId: 'credentials/cfg_limits0000',
    };
    await secrets.put(
      target.credentialsSecretId,
      JSON.stringify({ kind: 'apiKey', apiKey: 'sandbox-demo-key' }),
    );
    await processor.maintain(target);
    sandbox.server.stats.clear();
    return { processor, target };
  }

  it('declares list and write limits (for listing, for writing) and keeps within each: no 429', async function () {
    this.timeout(20_000);
    sandbox = await startSandbox(SandboxState.demo(3000));
    const account = sandbox.state.accounts.get('acct_demo')!;
    account.settings.limits = {
      requestsPerSecond: 0,
      concurrency: 0,
      listing: { requestsPerSecond: 4, concurrency: 0 },
      writing: { requestsPerSecond: 4, concurrency: 0 },
    };
    const { processor, target } = await connect({
      rateLimit: { requests: 1000, perMs: 1000 },
      concurrency: 8,
      listing: { requests: 4, perMs: 1000 },
      writing: { requests: 4, perMs: 1000 },
      pageSize: 500,
      batchSize: 500,
    });
    assert.deepEqual(processor.descriptor.limits, {
      list: { requests: 4, perMs: 1000, for: 'listing' },
      write: { requests: 4, perMs: 1000, for: 'writing' },
    });
    const began = Date.now();
    let cursor: string | undefined;
    const updates = Array.from({ length: 3000 }, (_, i) => ({
      contactId: SandboxList.contactId(i),
      value: `value_${String(i).padStart(12, '0')}`,
    }));
    const writes = processor.writeValues(target, updates); // 6 batches of 500, at once
    do {
      cursor = (await processor.listPage(target, cursor, 'full')).nextCursor;
    } while (cursor);
    const results = await writes;
    const stats = sandbox.server.stats.get('acct_demo')!;
    assert.equal(stats.byStatus['429'], undefined);
    assert.equal(stats.needed.listing, 6);
    assert.equal(stats.needed.writing, 6);
    assert.equal(results.filter((r) => r.status === 'updated').length, 3000);
    // Six of each at 4 a second: at least 1.25 s from the first to the last of each kind.
    const seconds = (Date.now() - began) / 1000;
    assert.ok(seconds >= 1.2, `${seconds} s`);
  });

  it('is told its limits through the environment: a profile, single figures taking precedence', () => {
    const client = loadConfig({
      ESPRESSO_SANDBOX_CLIENT_PROFILE: 'iterable',
      ESPRESSO_SANDBOX_CLIENT_LIST_RPS: '20',
      ESPRESSO_SANDBOX_CLIENT_CONCURRENCY: '3',
    }).sandbox.client;
    assert.deepEqual(client.listing, { requests: 20, perMs: 1000 });
    assert.deepEqual(client.writing, { requests: 5, perMs: 1000 });
    assert.equal(client.concurrency, 3);
    assert.equal(client.batchSize, 1000);
    const plain = loadConfig({}).sandbox.client;
    assert.deepEqual(plain, {
      rateLimit: { requests: 1000, perMs: 1000 },
      concurrency: 8,
      pageSize: 1000,
      batchSize: 500,
    });
    assert.equal(
      new SandboxProcessor({ secrets: undefined! }, { url: 'http://127.0.0.1:1', ...plain }).descriptor
        .limits,
      undefined,
    );
    assert.throws(
      () => loadConfig({ ESPRESSO_SANDBOX_CLIENT_PROFILE: 'hubspot-free' }),
      /ESPRESSO_SANDBOX_CLIENT_PROFILE/,
    );
  });

  it("keeps within a profile's figures told through ESPRESSO_SANDBOX_CLIENT_PROFILE", async function () {
    this.timeout(20_000);
    sandbox = await startSandbox(SandboxState.demo(600));
    const account = sandbox.state.accounts.get('acct_demo')!;
    account.settings = { ...account.settings, ...structuredClone(SANDBOX_PROFILES['hubspot-pro']) };
    const client = loadConfig({ ESPRESSO_SANDBOX_CLIENT_PROFILE: 'hubspot-pro' }).sandbox.client;
    assert.deepEqual(client, clientLimitsOf(SANDBOX_PROFILES['hubspot-pro']));
    assert.deepEqual(client.listing, { requests: 5, perMs: 1000 });
    assert.equal(client.writing, undefined);
    assert.deepEqual(client.rateLimit, { requests: 190, perMs: 10_000 });
    assert.deepEqual([client.pageSize, client.batchSize], [200, 100]);
    const { processor, target } = await connect(client);
    let cursor: string | undefined;
    let listed = 0;
    do {
      const page = await processor.listPage(target, cursor, 'full');
      listed += page.contacts.length;
      cursor = page.nextCursor;
    } while (cursor);
    const updates = Array.from({ length: 600 }, (_, i) => ({
      contactId: SandboxList.contactId(i),
      value: `value_${String(i).padStart(12, '0')}`,
    }));
    const results = await processor.writeValues(target, updates);
    assert.equal(listed, 600);
    assert.equal(results.filter((r) => r.status === 'updated').length, 600);
    const stats = sandbox.server.stats.get('acct_demo')!;
    assert.equal(stats.byStatus['429'], undefined);
    assert.equal(stats.needed.listing, 3); // pages of 200
    assert.equal(stats.needed.writing, 6); // batches of 100
  });
});
