import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { RateLimitedError, TransientError } from '../../src/processors/errors';
import { KLAVIYO_MARKER_EXTERNAL_ID, KLAVIYO_REVISION } from '../../src/processors/klaviyo';
import type { KlaviyoFake } from '../fakes/klaviyo-server';
import { processorContract } from './contract';
import { klaviyoHarness } from './klaviyo-harness';

const value = () => randomBytes(16).toString('base64url');
const fakes: KlaviyoFake[] = [];
const harness = async () => {
  const h = await klaviyoHarness();
  fakes.push(h.fake);
  return h;
};

processorContract('Klaviyo', harness, { refreshTokens: false });

describe('Klaviyo processor', function () {
  this.timeout(60_000);
  let h: Awaited<ReturnType<typeof klaviyoHarness>>;
  before(async () => {
    h = await harness();
  });
  after(() => h.stop());

  const requestsTo = (path: RegExp, method = 'GET', from = 0) =>
    h.fake.requests
      .slice(from)
      .filter((r) => r.method === method && path.test(new URL(r.url, 'http://x').pathname));

  it('names the field lcee and links with the person lookup merge tag; API key only, no lists', async () => {
    const { descriptor } = h.processor;
    assert.equal(h.processor.fieldName(), 'lcee');
    assert.equal(h.processor.fieldName('lcee-v2!'), 'lceev2');
    assert.equal(descriptor.mergeTag('lcee'), "{{ person|lookup:'lcee' }}");
    assert.equal(descriptor.oauth2, undefined);
    assert.ok(descriptor.apiKey);
    assert.equal(descriptor.maxBatchSize, 100);
    assert.deepEqual(descriptor.limits, { accounts: { requests: 1, perMs: 1_000 } }, "Get Accounts' 1/s");
    const account = h.fake.newAccount();
    const { account: info } = await h.processor.connectWithApiKey(account.apiKey);
    assert.deepEqual(info, { accountId: account.id, accountLabel: account.name, lists: [] });
  });

  it('declares the field on one marker profile, even when two maintenances race', async () => {
    const target = await h.connectWithApiKey();
    const reports = await Promise.all([h.processor.maintain(target), h.processor.maintain(target)]);
    assert.ok(reports.some((r) => r.field === 'created'));
    const markers = [...h.accountOf(target).profiles.values()].filter(
      (p) => p.external_id === KLAVIYO_MARKER_EXTERNAL_ID,
    );
    assert.equal(markers.length, 1);
    assert.equal(markers[0]!.email, undefined);
    // The marker is never listed as a contact.
    const page = await h.processor.listPage(target, undefined, 'full');
    assert.deepEqual(page.contacts, []);
  });

  it('pages by 100 with short cursors that name no email, each profile once', async () => {
    const target = await h.connectWithApiKey();
    await h.processor.maintain(target);
    const seeded = await h.seed(target, 250);
    const from = h.fake.requests.length;
    const ids: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await h.processor.listPage(target, cursor, 'full');
      ids.push(...page.contacts.map((c) => c.contactId));
      cursor = page.nextCursor;
      if (cursor) {
        assert.ok(cursor.length < 100 && !cursor.includes('@'), cursor);
        assert.ok(!Buffer.from(cursor, 'base64url').toString().includes('@'));
      }
    } while (cursor);
    assert.deepEqual(ids, seeded);
    const pages = requestsTo(/^\/api\/profiles$/, 'GET', from);
    assert.equal(pages.length, 3);
    for (const r of pages) {
      const q = new URL(r.url, 'http://x').searchParams;
      assert.equal(q.get('page[size]'), '100');
      assert.equal(q.get('fields[profile]'), 'external_id,properties');
    }
  });

  it('writes each profile with Update Profile, by its id, the property only and no email', async () => {
    const target = await h.connectWithApiKey();
    await h.processor.maintain(target);
    const seeded = await h.seed(target, 30);
    const from = h.fake.requests.length;
    const updates = seeded.map((contactId) => ({ contactId, value: value() }));
    const results = await h.processor.writeValues(target, updates);
    assert.ok(results.every((r) => r.status === 'updated'));
    const patches = requestsTo(/^\/api\/profiles\/[^/]+$/, 'PATCH', from);
    assert.equal(patches.length, 30);
    const first = patches.find((r) => r.url === `/api/profiles/${seeded[0]}`)!;
    assert.deepEqual(first.body, {
      data: { type: 'profile', id: seeded[0], attributes: { properties: { lcee: updates[0]!.value } } },
    });
    assert.ok(!JSON.stringify(patches.map((r) => r.body)).includes('@'));
    assert.equal(requestsTo(/^\/api\/profile-bulk-import-jobs/, 'POST', from).length, 0);
    for (const u of updates) assert.equal(await h.valueOf(target, u.contactId), u.value);
  });

  it("reads Klaviyo's Retry-After into retryAfterMs", async () => {
    const target = await h.connectWithApiKey();
    const { retryAfterMs } = await h.rateLimit(target, true);
    try {
      await assert.rejects(h.processor.writeValues(target, [{ contactId: 'x', value: value() }]), (err) => {
        assert.ok(err instanceof RateLimitedError, String(err));
        assert.equal(err.retryAfterMs, retryAfterMs);
        return true;
      });
    } finally {
      await h.rateLimit(target, false);
    }
  });

  it("writes at most 10 profiles a second, under Update Profile's 750 a minute", async () => {
    const { rateLimit } = h.pacedProcessor.descriptor;
    assert.ok((rateLimit.requests * 60_000) / rateLimit.perMs <= 750 * 0.8);
    const target = await h.connectWithApiKey();
    // Klaviyo's own limits, which answer 429 to any request over them. The connect's Get Accounts
    // was paced by the harness's other processor: its second is left to pass first.
    h.accountOf(target).limitScale = 1;
    await new Promise((r) => setTimeout(r, 1_000));
    await h.pacedProcessor.maintain(target);
    const seeded = await h.seed(target, 25);
    const from = h.fake.requests.length;
    const results = await h.pacedProcessor.writeValues(
      target,
      seeded.map((contactId) => ({ contactId, value: value() })),
    );
    assert.ok(results.every((r) => r.status === 'updated'));
    const starts = requestsTo(/^\/api\/profiles\/[^/]+$/, 'PATCH', from).map((r) => r.at);
    assert.equal(starts.length, 25);
    for (const t of starts) {
      const inSecond = starts.filter((u) => u >= t && u < t + 1_000).length;
      assert.ok(inSecond <= 10, `${inSecond} profiles written in the second from ${t}`);
    }
  });

  it('rejects a profile deleted since the listing and never re-creates it', async () => {
    const target = await h.connectWithApiKey();
    await h.processor.maintain(target);
    const seeded = await h.seed(target, 5);
    const profiles = h.accountOf(target).profiles;
    profiles.delete(seeded[2]!);
    const before = new Set(profiles.keys());
    const results = await h.processor.writeValues(
      target,
      seeded.map((contactId) => ({ contactId, value: value() })),
    );
    const rejected = results.filter((r) => r.status === 'rejected');
    assert.deepEqual(
      rejected.map((r) => r.contactId),
      [seeded[2]],
    );
    const reason = rejected[0]!.status === 'rejected' ? rejected[0]!.reason : '';
    assert.match(reason, /deleted since the listing/);
    assert.ok(!reason.includes(seeded[2]!));
    // No profile was created, under that id or any other.
    assert.deepEqual(new Set(profiles.keys()), before);
  });

  it('turns bad-shaped 2xx bodies into TransientError', async () => {
    const target = await h.connectWithApiKey();
    await h.processor.maintain(target);
    await h.seed(target, 3);
    h.accountOf(target).malformedNext = '/api/profiles';
    await assert.rejects(h.processor.listPage(target, undefined, 'full'), TransientError);
    const [profile] = await h.seed(target, 1);
    h.accountOf(target).malformedNext = '/api/profiles/';
    await assert.rejects(
      h.processor.writeValues(target, [{ contactId: profile!, value: value() }]),
      (err) => err instanceof TransientError,
    );
    const account = h.fake.newAccount();
    account.malformedNext = '/api/accounts';
    await assert.rejects(h.processor.connectWithApiKey(account.apiKey), TransientError);
  });

  it('lists in incremental mode only profiles whose property is empty', async () => {
    const target = await h.connectWithApiKey();
    await h.processor.maintain(target);
    const seeded = await h.seed(target, 4);
    const profiles = h.accountOf(target).profiles;
    profiles.get(seeded[0]!)!.properties.lcee = '';
    profiles.get(seeded[1]!)!.properties.lcee = value();
    profiles.get(seeded[2]!)!.properties.lcee = 'set by hand';
    const incremental = await h.processor.listPage(target, undefined, 'incremental');
    assert.deepEqual(
      incremental.contacts.map((c) => c.contactId),
      [seeded[0], seeded[3]],
    );
    const full = await h.processor.listPage(target, undefined, 'full');
    assert.equal(full.contacts.length, 4);
    assert.equal(full.contacts[1]!.currentValue, profiles.get(seeded[1]!)!.properties.lcee);
    // A value set by hand is the profile's value too: kept, never replaced.
    assert.equal(full.contacts[2]!.currentValue, 'set by hand');
  });
});

describe('Klaviyo fake: refuses what Klaviyo refuses', () => {
  it("answers 429 from load: each endpoint's own burst and steady windows, Retry-After and nothing else", async () => {
    const h = await klaviyoHarness();
    try {
      const account = h.fake.newAccount();
      const headers = { authorization: `Klaviyo-API-Key ${account.apiKey}`, revision: KLAVIYO_REVISION };
      const get = (path: string) => fetch(`${h.fake.url}${path}`, { headers });
      // Wait for the start of a second, so the burst below falls in one window.
      await new Promise((r) => setTimeout(r, 1_000 - (Date.now() % 1_000) + 20));
      const first = await get('/api/accounts');
      assert.equal(first.status, 200);
      assert.equal(first.headers.get('ratelimit-limit'), '15', 'the steady window of Get Accounts');
      assert.equal(first.headers.get('ratelimit-remaining'), '14');
      assert.ok(Number(first.headers.get('ratelimit-reset')) <= 60);
      const second = await get('/api/accounts');
      assert.equal(second.status, 429, 'Get Accounts: 1/s burst');
      assert.equal(second.headers.get('retry-after'), '1');
      assert.deepEqual(
        [...second.headers.keys()].filter((k) => /rate|retry/i.test(k)),
        ['retry-after'],
        'a 429 carries Retry-After only',
      );
      const [body] = ((await second.json()) as { errors: Array<{ code: string }> }).errors;
      assert.equal(body!.code, 'throttled');
      // Get Profiles counts on its own: the Get Accounts window is full, Get Profiles' is not.
      const listings = await Promise.all(Array.from({ length: 80 }, () => get('/api/profiles')));
      const statuses = listings.map((r) => r.status);
      assert.equal(statuses.filter((s) => s === 200).length, 75, 'Get Profiles: 75/s burst');
      assert.equal(statuses.filter((s) => s === 429).length, 5);

      // The steady window: 15 Get Accounts a minute, then 429 until the minute ends.
      const steady = h.fake.newAccount();
      const accounts = () =>
        fetch(`${h.fake.url}/api/accounts`, {
          headers: { ...headers, authorization: `Klaviyo-API-Key ${steady.apiKey}` },
        });
      steady.limitScale = 1;
      const answers: Response[] = [];
      // Both requests must fall in one minute of the clock.
      if (Date.now() % 60_000 > 55_000)
        await new Promise((r) => setTimeout(r, 60_000 - (Date.now() % 60_000)));
      // 16 requests, each in a second of its own, take 16 s: a scaled burst keeps the test short.
      steady.windows.set('Get Accounts', {
        second: 0,
        inSecond: 0,
        minute: Math.floor(Date.now() / 60_000),
        inMinute: 14,
      });
      answers.push(await accounts());
      await new Promise((r) => setTimeout(r, 1_000));
      answers.push(await accounts());
      assert.deepEqual(
        answers.map((r) => r.status),
        [200, 429],
      );
      const wait = Number(answers[1]!.headers.get('retry-after'));
      assert.ok(wait >= 1 && wait <= 60, `Retry-After ${wait}: until the minute ends`);
    } finally {
      await h.stop();
    }
  });

  it('refuses a key without the scope an endpoint needs (403, naming it) and a revision that is none', async () => {
    const h = await klaviyoHarness();
    try {
      const target = await h.connectWithApiKey();
      h.accountOf(target).scopes.delete('profiles:write');
      await assert.rejects(
        h.processor.maintain(target),
        (err: Error) =>
          err.name === 'InvalidCredentialsError' &&
          /missing required scopes: profiles:write/.test(err.message),
      );
      const account = h.accountOf(target);
      const answer = await fetch(`${h.fake.url}/api/accounts`, {
        headers: { authorization: `Klaviyo-API-Key ${account.apiKey}`, revision: '2026-07-16' },
      });
      assert.equal(answer.status, 400);
      const [error] = ((await answer.json()) as { errors: Array<{ detail: string }> }).errors;
      assert.match(error!.detail, /Invalid revision: 2026-07-16/);
    } finally {
      await h.stop();
    }
  });

  it("accepts the processor's listing and Update Profile requests as sent, and refuses each variation Klaviyo refuses", async () => {
    // Not in `fakes`: the variations below are made by hand, not by the processor.
    const h = await klaviyoHarness();
    try {
      const target = await h.connectWithApiKey();
      await h.processor.maintain(target);
      const [profile, other] = await h.seed(target, 2);
      await h.processor.listPage(target, undefined, 'full');
      await h.processor.writeValues(target, [{ contactId: profile!, value: value() }]);
      const listing = h.fake.requests
        .filter((r) => r.method === 'GET' && r.url.startsWith('/api/profiles?'))
        .at(-1)!;
      const patch = h.fake.requests.filter((r) => r.method === 'PATCH').at(-1)!;
      const headers = (r: typeof patch) =>
        Object.fromEntries(
          ['authorization', 'revision', 'accept', 'content-type'].flatMap((k) =>
            r.headers[k] === undefined ? [] : [[k, String(r.headers[k])]],
          ),
        );
      const send = async (
        r: typeof patch,
        change: { url?: string; headers?: Record<string, string>; body?: unknown } = {},
      ) => {
        const res = await fetch(`${h.fake.url}${change.url ?? r.url}`, {
          method: r.method,
          headers: { ...headers(r), ...change.headers },
          body: r.method === 'PATCH' ? JSON.stringify(change.body ?? r.body) : undefined,
        });
        const json = (await res.json()) as { errors?: Array<{ code: string; detail: string }> };
        return { status: res.status, code: json.errors?.[0]?.code };
      };
      const body = patch.body as { data: { type: string; id: string; attributes: Record<string, unknown> } };
      const data = (change: Record<string, unknown>) => ({ data: { ...body.data, ...change } });

      assert.deepEqual(await send(listing), { status: 200, code: undefined });
      const oversized = new URL(listing.url, 'http://x');
      oversized.searchParams.set('page[size]', '101');
      assert.deepEqual(await send(listing, { url: `${oversized.pathname}${oversized.search}` }), {
        status: 400,
        code: 'invalid',
      });
      assert.equal((await send(listing, { url: `${listing.url}&unknown=1` })).status, 400);
      assert.equal((await send(listing, { headers: { revision: '' } })).status, 400);

      assert.deepEqual(await send(patch), { status: 200, code: undefined });
      assert.equal((await send(patch, { body: data({ extra: 1 }) })).status, 400);
      assert.equal((await send(patch, { body: data({ type: 'profiles' }) })).status, 400);
      assert.equal(
        (await send(patch, { body: data({ attributes: { ...body.data.attributes, lcee: 'x' } }) })).status,
        400,
        'a property outside properties',
      );
      assert.equal((await send(patch, { url: `/api/profiles/${other}` })).status, 409, 'id not the path');
      assert.equal((await send(patch, { headers: { 'content-type': 'text/plain' } })).status, 415);
      assert.deepEqual(await send(patch, { headers: { revision: '' } }), { status: 400, code: 'invalid' });
    } finally {
      await h.stop();
    }
  });

  // Not a processor test: espresso writes with Update Profile. The fake's import jobs upsert as
  // Klaviyo documents, so writes through them would fail the processor's never-re-creates test.
  it('import jobs create a profile for a row that matches none, even one keyed by a deleted id (an upsert)', async () => {
    const h = await klaviyoHarness();
    try {
      const account = h.fake.newAccount();
      // Import jobs also need the list scopes (docs/esps/klaviyo.md).
      account.scopes.add('lists:read').add('lists:write');
      const [kept, deleted] = h.fake.seed(account, 2);
      account.profiles.delete(deleted!);
      const headers = {
        authorization: `Klaviyo-API-Key ${account.apiKey}`,
        revision: KLAVIYO_REVISION,
        'content-type': 'application/vnd.api+json',
      };
      const row = (id: string) => ({ type: 'profile', id, attributes: { properties: { lcee: value() } } });
      const created = await fetch(`${h.fake.url}/api/profile-bulk-import-jobs`, {
        method: 'POST',
        headers,
        body: JSON.stringify({
          data: {
            type: 'profile-bulk-import-job',
            attributes: { profiles: { data: [row(kept!), row(deleted!)] } },
          },
        }),
      });
      const jobId = ((await created.json()) as { data: { id: string } }).data.id;
      for (let poll = 0; poll < 2; poll++) {
        await fetch(`${h.fake.url}/api/profile-bulk-import-jobs/${jobId}`, { headers });
      }
      assert.equal(account.profiles.size, 2, 'one updated, one created');
      assert.equal(account.profiles.has(deleted!), false, 'created under a new id');
      assert.ok([...account.profiles.values()].every((p) => typeof p.properties.lcee === 'string'));
    } finally {
      await h.stop();
    }
  });
});

describe('Klaviyo requests (all of this file)', () => {
  it('every request the processor sent passed the fake strict schema checks, with key and revision', () => {
    const all = fakes.flatMap((f) => f.requests);
    assert.ok(all.length > 100);
    // 404: a profile deleted (or never there) refused by Update Profile, on purpose.
    const deletedProfile = (r: (typeof all)[number]) => r.method === 'PATCH' && r.status === 404;
    const refused = all.filter(
      (r) =>
        r.status !== undefined &&
        r.status >= 400 &&
        ![401, 409, 429].includes(r.status) &&
        !deletedProfile(r),
    );
    assert.deepEqual(
      refused.map((r) => `${r.method} ${r.url} -> ${r.status}`),
      [],
    );
    for (const r of all) {
      assert.equal(r.headers.revision, KLAVIYO_REVISION);
      assert.match(String(r.headers.authorization), /^Klaviyo-API-Key /);
      assert.match(String(r.headers.accept), /^application\/vnd\.api\+json$/);
    }
  });
});
