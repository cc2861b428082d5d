import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { loadConfig } from '../../src/config';
import { BrevoProcessor } from '../../src/processors/brevo';
import { RateLimitedError, TransientError } from '../../src/processors/errors';
import { createProcessorRegistry } from '../../src/processors/registry';
import { MAX_BATCH, type BrevoFake } from '../fakes/brevo-server';
import { brevoHarness } from './brevo-harness';
import { processorContract } from './contract';

const value = () => randomBytes(16).toString('base64url');
const fakes: BrevoFake[] = [];
const harness = async () => {
  const h = await brevoHarness();
  fakes.push(h.fake);
  return h;
};

processorContract('Brevo', harness, { refreshTokens: false });

describe('Brevo processor', function () {
  this.timeout(60_000);
  let h: Awaited<ReturnType<typeof brevoHarness>>;
  before(async () => {
    h = await harness();
  });
  after(() => h.stop());

  const requestsTo = (path: string, method = 'GET', from = 0) =>
    h.fake.requests
      .slice(from)
      .filter((r) => r.method === method && new URL(r.url, 'http://x').pathname === `/v3${path}`);

  it('names the field LCEE, links with {{ contact.LCEE }}, connects with a key only and no lists', async () => {
    const { descriptor } = h.processor;
    assert.equal(h.processor.fieldName(), 'LCEE');
    assert.equal(h.processor.fieldName('lcee-v2!'), 'LCEEV2');
    assert.equal(descriptor.mergeTag('LCEE'), '{{ contact.LCEE }}');
    assert.equal(descriptor.oauth2, undefined);
    assert.equal(descriptor.apiKey?.label, 'Brevo API key');
    assert.equal(descriptor.maxBatchSize, MAX_BATCH);
    const account = h.fake.newAccount();
    const from = h.fake.requests.length;
    const { account: info } = await h.processor.connectWithApiKey(account.apiKey);
    // The organization id and company name; the login email never leaves the answer.
    assert.deepEqual(info, {
      accountId: account.organizationId,
      accountLabel: account.companyName,
      lists: [],
    });
    assert.ok(!JSON.stringify(info).includes('@'));
    const [validation] = requestsTo('/account', 'GET', from);
    assert.equal(validation!.headers['api-key'], account.apiKey);
    assert.equal(validation!.headers.authorization, undefined);
  });

  it('names an account whose details lack organization_id by its user id', async () => {
    const account = h.fake.newAccount();
    account.omitOrganizationId = true;
    const { account: info } = await h.processor.connectWithApiKey(account.apiKey);
    assert.equal(info.accountId, `user-${account.userId}`);
  });

  it('creates a normal text attribute, once even when two maintenances race', async () => {
    const target = await h.connectWithApiKey();
    const from = h.fake.requests.length;
    const reports = await Promise.all([h.processor.maintain(target), h.processor.maintain(target)]);
    assert.deepEqual(reports.map((r) => r.field).sort(), ['created', 'exists']);
    const creates = requestsTo('/contacts/attributes/normal/LCEE', 'POST', from).filter(
      (r) => r.status === 201,
    );
    assert.equal(creates.length, 1);
    assert.deepEqual(creates[0]!.body, { type: 'text' });
    assert.deepEqual(h.accountOf(target).attributes.get('LCEE'), { category: 'normal', type: 'text' });
  });

  it("fails maintenance with Brevo's reason when LCEE exists in another category", async () => {
    const target = await h.connectWithApiKey();
    h.accountOf(target).attributes.set('LCEE', { category: 'transactional', type: 'text' });
    await assert.rejects(h.processor.maintain(target), (err: Error) => {
      assert.equal(err.name, 'RequestRejectedError');
      assert.match(err.message, /Attribute name already exists/);
      return true;
    });
  });

  it('pages oldest first by 1,000 with offset cursors that name no email, each contact once by its id', async () => {
    const target = await h.connectWithApiKey();
    await h.processor.maintain(target);
    const seeded = await h.seed(target, 2_500);
    const from = h.fake.requests.length;
    const ids: string[] = [];
    const cursors: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await h.processor.listPage(target, cursor, 'incremental');
      ids.push(...page.contacts.map((c) => c.contactId));
      cursor = page.nextCursor;
      if (cursor) cursors.push(cursor);
    } while (cursor);
    assert.deepEqual(ids, seeded);
    assert.deepEqual(cursors, ['1000', '2000']);
    const pages = requestsTo('/contacts', 'GET', from);
    assert.deepEqual(
      pages.map((r) => new URL(r.url, 'http://x').search),
      [
        '?limit=1000&offset=0&sort=asc',
        '?limit=1000&offset=1000&sort=asc',
        '?limit=1000&offset=2000&sort=asc',
      ],
    );
  });

  it('writes 100 contacts a request by id with the attribute only, no email', async () => {
    const target = await h.connectWithApiKey();
    await h.processor.maintain(target);
    const seeded = await h.seed(target, 250);
    const from = h.fake.requests.length;
    const updates = seeded.map((contactId) => ({ contactId, value: value() }));
    const results = await h.processor.writeValues(target, updates);
    assert.ok(results.every((r) => r.status === 'updated'));
    const batches = requestsTo('/contacts/batch', 'POST', from);
    assert.deepEqual(
      // Batches go out side by side: in any order.
      batches.map((r) => (r.body as { contacts: unknown[] }).contacts.length).sort((a, b) => b - a),
      [100, 100, 50],
    );
    assert.ok(batches.every((r) => r.status === 204));
    const first = batches.find(
      (r) => (r.body as { contacts: Array<{ id: number }> }).contacts[0]!.id === Number(seeded[0]),
    );
    assert.deepEqual((first!.body as { contacts: unknown[] }).contacts[0], {
      id: Number(seeded[0]),
      attributes: { LCEE: updates[0]!.value },
    });
    assert.ok(!JSON.stringify(batches.map((r) => r.body)).includes('@'));
  });

  it('rejects a contact deleted since the listing (207 failureIds) and never re-creates it', async () => {
    const target = await h.connectWithApiKey();
    await h.processor.maintain(target);
    const seeded = await h.seed(target, 5);
    const contacts = h.accountOf(target).contacts;
    contacts.delete(Number(seeded[2]));
    const from = h.fake.requests.length;
    const results = await h.processor.writeValues(
      target,
      seeded.map((contactId) => ({ contactId, value: value() })),
    );
    const rejected = results.filter((r) => r.status === 'rejected');
    assert.deepEqual(
      rejected.map((r) => r.contactId),
      [seeded[2]],
    );
    assert.match(rejected[0]!.status === 'rejected' ? rejected[0]!.reason : '', /deleted since the listing/);
    assert.equal(requestsTo('/contacts/batch', 'POST', from)[0]!.status, 207);
    assert.equal(contacts.size, 4, 'no contact was created');
  });

  it('reads a 207 without successIds as every row but failureIds updated', async () => {
    const target = await h.connectWithApiKey();
    await h.processor.maintain(target);
    const seeded = await h.seed(target, 3);
    h.accountOf(target).refused.add(Number(seeded[1]));
    h.accountOf(target).omitSuccessIds = true;
    const results = await h.processor.writeValues(
      target,
      seeded.map((contactId) => ({ contactId, value: value() })),
    );
    assert.deepEqual(
      results.map((r) => r.status),
      ['updated', 'rejected', 'updated'],
    );
  });

  it('isolates a row that makes Brevo refuse the whole batch (400) and writes the others', async () => {
    const target = await h.connectWithApiKey();
    await h.processor.maintain(target);
    const seeded = await h.seed(target, 40);
    h.accountOf(target).poisoned.add(Number(seeded[17]));
    const updates = seeded.map((contactId) => ({ contactId, value: value() }));
    const results = await h.processor.writeValues(target, updates);
    const rejected = results.filter((r) => r.status === 'rejected');
    assert.deepEqual(
      rejected.map((r) => r.contactId),
      [seeded[17]],
    );
    assert.match(rejected[0]!.status === 'rejected' ? rejected[0]!.reason : '', /cannot be updated/);
    assert.equal(await h.valueOf(target, seeded[16]!), updates[16]!.value);
    assert.equal(await h.valueOf(target, seeded[17]!), undefined);
  });

  it('is what `espresso connect brevo` and the web page find under "brevo", without an OAuth app', () => {
    const registry = createProcessorRegistry(
      { secrets: h.secrets },
      loadConfig({ ESPRESSO_SANDBOX_ENABLED: 'false' }),
    );
    const brevo = registry.get('brevo');
    assert.ok(brevo instanceof BrevoProcessor);
    assert.equal(brevo.descriptor.oauth2, undefined);
  });

  it("reads Brevo's x-sib-ratelimit-reset into retryAfterMs (a 429 carries no Retry-After)", async () => {
    const target = await h.connectWithApiKey();
    await h.rateLimit(target, true);
    try {
      await assert.rejects(h.processor.writeValues(target, [{ contactId: '1', value: value() }]), (err) => {
        assert.ok(err instanceof RateLimitedError, String(err));
        assert.equal(err.retryAfterMs, 3_000);
        return true;
      });
      const answer = h.fake.requests.at(-1)!;
      assert.equal(answer.status, 429);
    } finally {
      await h.rateLimit(target, false);
    }
  });

  it('writes at most 8 requests a second under the contacts limit of 10, and GET /account under 100 an hour', async () => {
    const { rateLimit, limits } = h.pacedProcessor.descriptor;
    assert.ok((rateLimit.requests * 1_000) / rateLimit.perMs <= 10 * 0.8);
    assert.ok((limits!.account!.requests * 3_600_000) / limits!.account!.perMs <= 100);
    const target = await h.connectWithApiKey();
    await h.processor.maintain(target);
    h.accountOf(target).limitScale = 1; // Brevo's own limits: a 429 to any request over them.
    const seeded = await h.seed(target, 1_600);
    const from = h.fake.requests.length;
    const results = await h.pacedProcessor.writeValues(
      target,
      seeded.map((contactId) => ({ contactId, value: value() })),
    );
    assert.ok(results.every((r) => r.status === 'updated'));
    const starts = requestsTo('/contacts/batch', 'POST', from).map((r) => r.at);
    assert.equal(starts.length, 16);
    // Brevo's 10 a second is never reached, in any second (arrival jitter of a loaded machine
    // may bring a ninth request into a second; never a tenth and an eleventh)...
    for (const t of starts) {
      const inSecond = starts.filter((u) => u >= t && u < t + 1_000).length;
      assert.ok(inSecond <= 9, `${inSecond} requests in the second from ${t}`);
    }
    // ...and the 16 requests are spread at 8 a second: 15 intervals of at least 125 ms (less jitter).
    assert.ok(starts.at(-1)! - starts[0]! >= 15 * 125 - 100, `${starts.at(-1)! - starts[0]!} ms`);
  });

  it('turns bad-shaped 2xx bodies into TransientError', async () => {
    const target = await h.connectWithApiKey();
    await h.processor.maintain(target);
    const [contact] = await h.seed(target, 1);
    h.accountOf(target).malformedNext = '/contacts';
    await assert.rejects(h.processor.listPage(target, undefined, 'full'), TransientError);
    h.accountOf(target).malformedNext = '/contacts/attributes';
    await assert.rejects(h.processor.maintain(target), TransientError);
    h.accountOf(target).refused.add(Number(contact));
    h.accountOf(target).malformedNext = '/contacts/batch';
    await assert.rejects(
      h.processor.writeValues(target, [{ contactId: contact!, value: value() }]),
      TransientError,
    );
    const account = h.fake.newAccount();
    account.malformedNext = '/account';
    await assert.rejects(h.processor.connectWithApiKey(account.apiKey), TransientError);
  });

  it('keeps any value a contact holds, and lists in incremental mode only contacts without one', async () => {
    const target = await h.connectWithApiKey();
    await h.processor.maintain(target);
    const seeded = await h.seed(target, 4);
    const contacts = h.accountOf(target).contacts;
    contacts.get(Number(seeded[0]))!.attributes.LCEE = '';
    contacts.get(Number(seeded[1]))!.attributes.LCEE = 'kept-value-0123456789';
    contacts.get(Number(seeded[2]))!.attributes.LCEE = 'set by hand';
    const incremental = await h.processor.listPage(target, undefined, 'incremental');
    assert.deepEqual(
      incremental.contacts.map((c) => c.contactId),
      [seeded[0], seeded[3]],
    );
    const full = await h.processor.listPage(target, undefined, 'full');
    assert.deepEqual(
      full.contacts.map((c) => c.currentValue),
      [undefined, 'kept-value-0123456789', 'set by hand', undefined],
    );
  });
});

describe('Brevo fake: refuses what Brevo refuses', () => {
  it('answers 429 from load: 10 contacts requests a second, 100 other requests an hour, x-sib headers only', async () => {
    const h = await brevoHarness();
    try {
      const account = h.fake.newAccount();
      const get = (path: string, key = account.apiKey) =>
        fetch(`${h.fake.apiBaseUrl}${path}`, { headers: { 'api-key': key } });
      await new Promise((r) => setTimeout(r, 1_000 - (Date.now() % 1_000) + 20));
      const answers = await Promise.all(Array.from({ length: 12 }, () => get('/contacts/attributes')));
      assert.equal(answers.filter((r) => r.status === 200).length, 10);
      const refused = answers.find((r) => r.status === 429)!;
      assert.deepEqual([...refused.headers.keys()].filter((k) => /rate|retry/i.test(k)).sort(), [
        'x-sib-ratelimit-limit',
        'x-sib-ratelimit-remaining',
        'x-sib-ratelimit-reset',
      ]);
      assert.equal(refused.headers.get('x-sib-ratelimit-reset'), '1');
      // GET /account counts in the hourly window of "all other endpoints".
      const other = h.fake.newAccount();
      other.windows.set('other/h', { window: Math.floor(Date.now() / 3_600_000), count: 99 });
      assert.equal((await get('/account', other.apiKey)).status, 200);
      const over = await get('/account', other.apiKey);
      assert.equal(over.status, 429);
      assert.ok(Number(over.headers.get('x-sib-ratelimit-reset')) <= 3_600);
      assert.equal((await get('/contacts/attributes', other.apiKey)).status, 200, 'contacts count apart');
      const noKey = await fetch(`${h.fake.apiBaseUrl}/account`);
      assert.equal(noKey.status, 401);
      assert.deepEqual(await noKey.json(), { code: 'unauthorized', message: 'Key not found' });
    } finally {
      await h.stop();
    }
  });

  it("accepts the processor's requests as sent, and refuses each variation Brevo refuses", async () => {
    const h = await brevoHarness();
    try {
      const target = await h.connectWithApiKey();
      await h.processor.maintain(target);
      const [contact] = await h.seed(target, 1);
      const key = h.accountOf(target).apiKey;
      const send = async (method: string, path: string, body?: unknown) => {
        const res = await fetch(`${h.fake.apiBaseUrl}${path}`, {
          method,
          headers: { 'api-key': key, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
          body: body === undefined ? undefined : JSON.stringify(body),
        });
        return res.status;
      };
      const row = { id: Number(contact), attributes: { LCEE: value() } };
      assert.equal(await send('GET', '/contacts?limit=1000&offset=0&sort=asc'), 200);
      assert.equal(await send('GET', '/contacts?limit=1001&offset=0&sort=asc'), 400);
      assert.equal(await send('GET', '/contacts?limit=10&sort=up'), 400);
      assert.equal(await send('GET', '/contacts?limit=10&page=2'), 400, 'an unknown parameter');
      assert.equal(await send('POST', '/contacts/batch', { contacts: [row] }), 204);
      assert.equal(await send('POST', '/contacts/batch', { contacts: Array(MAX_BATCH + 1).fill(row) }), 400);
      assert.equal(await send('POST', '/contacts/batch', { contacts: [] }), 400);
      assert.equal(
        await send('POST', '/contacts/batch', { contacts: [{ ...row, email: 'a@example.com' }] }),
        400,
      );
      assert.equal(
        await send('POST', '/contacts/batch', { contacts: [{ ...row, attributes: { NOPE: 'x' } }] }),
        400,
      );
      assert.equal(
        await send('POST', '/contacts/batch', { contacts: [{ ...row, attributes: { LCEE: 7 } }] }),
        400,
      );
      assert.equal(await send('POST', '/contacts/batch', { contacts: [{ ...row, extra: 1 }] }), 400);
      assert.equal(await send('POST', '/contacts/attributes/normal/LCEE', { type: 'text' }), 400, 'exists');
      assert.equal(await send('POST', '/contacts/attributes/plain/OTHER', { type: 'text' }), 400);
      assert.equal(await send('POST', '/contacts/attributes/normal/OTHER', { type: 'string' }), 400);
    } finally {
      await h.stop();
    }
  });
});

describe('Brevo requests (all of this file)', () => {
  it('every request the processor sent passed the fake strict checks, with the api-key header', () => {
    const all = fakes.flatMap((f) => f.requests);
    assert.ok(all.length > 100);
    // 401: the contract's refused key; 429: the rate-limit tests; 400 on attribute create: the race;
    // 400 on a batch holding a poisoned contact: the isolation test, on purpose.
    const poisoned = new Set(fakes.flatMap((f) => [...f.accounts.values()].flatMap((a) => [...a.poisoned])));
    const holdsPoisoned = (r: (typeof all)[number]) =>
      r.url === '/v3/contacts/batch' &&
      (r.body as { contacts: Array<{ id: number }> }).contacts.some((c) => poisoned.has(c.id));
    const refused = all.filter(
      (r) =>
        r.status !== undefined &&
        r.status >= 400 &&
        ![401, 429].includes(r.status) &&
        !(r.status === 400 && r.method === 'POST' && r.url.startsWith('/v3/contacts/attributes/')) &&
        !(r.status === 400 && holdsPoisoned(r)),
    );
    assert.deepEqual(
      refused.map((r) => `${r.method} ${r.url} -> ${r.status}`),
      [],
    );
    for (const r of all) assert.match(String(r.headers['api-key']), /^xkeysib-/);
  });
});
