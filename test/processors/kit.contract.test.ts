import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { InvalidCredentialsError, RateLimitedError, TransientError } from '../../src/processors/errors';
import { KitProcessor } from '../../src/processors/kit-esp';
import type { FakeKit } from '../fakes/kit-server';
import { processorContract } from './contract';
import { kitHarness, type KitHarness } from './kit-harness';

const value = () => randomBytes(16).toString('base64url');
const fakes: FakeKit[] = [];
const harness = async () => {
  const h = await kitHarness();
  fakes.push(h.fake);
  return h;
};

processorContract('Kit', harness);

describe('Kit processor', function () {
  this.timeout(60_000);
  let h: KitHarness;
  before(async () => {
    h = await harness();
  });
  after(() => h.stop());

  const since = (from: number) => h.fake.requests.slice(from);

  it('names the field lcee, links with {{ subscriber.lcee }}, keeps both credentials’ limits; no lists', async () => {
    const { descriptor } = new KitProcessor({ secrets: h.secrets });
    assert.equal(h.processor.fieldName(), 'lcee');
    assert.equal(h.processor.fieldName('LCEE-v2!'), 'lceev2');
    assert.equal(descriptor.mergeTag('lcee'), '{{ subscriber.lcee }}');
    assert.equal(descriptor.oauth2, undefined, 'no OAuth without an app');
    assert.equal(descriptor.maxBatchSize, 100, "the bulk endpoint's synchronous cut-off");
    assert.deepEqual(descriptor.rateLimit, { requests: 600, perMs: 60_000 });
    assert.deepEqual(descriptor.limits, { apiKey: { requests: 120, perMs: 60_000 } });
    const account = h.fake.newAccount();
    const { account: info } = await h.processor.connectWithApiKey(account.apiKey);
    assert.deepEqual(info, { accountId: String(account.id), accountLabel: account.name, lists: [] });
    assert.ok(!JSON.stringify(info).includes('@'), 'the owner email stays out of the account');
  });

  it('sends the OAuth consent to Kit’s v4 authorize URL without scope or PKCE', () => {
    const { url } = h.processor.authorizationRequest('https://espresso.example/auth/kit/callback', 's1');
    const u = new URL(url);
    assert.equal(u.origin + u.pathname, `${h.fake.url}/v4/oauth/authorize`);
    assert.deepEqual([...u.searchParams.keys()].sort(), [
      'client_id',
      'redirect_uri',
      'response_type',
      'state',
    ]);
  });

  it('with OAuth, writes through the bulk endpoint, 100 rows a request, failures matched to their rows', async () => {
    const target = await h.connectWithOAuth!();
    await h.processor.maintain(target);
    const seeded = await h.seed(target, 250);
    // A subscriber deleted since the listing: Kit answers its failure with a null subscriber id.
    const account = h.accountOf(target);
    account.subscribers.splice(
      account.subscribers.findIndex((s) => String(s.id) === seeded[7]),
      1,
    );
    await h.rejectRows(target, [seeded[120]!]);
    const updates = seeded.map((contactId) => ({ contactId, value: value() }));
    const from = h.fake.requests.length;
    const results = await h.processor.writeValues(target, updates);
    const rejected = results.filter((r) => r.status === 'rejected');
    assert.deepEqual(
      rejected.map((r) => [r.contactId, r.status === 'rejected' && r.reason]),
      [
        [seeded[7], 'Subscriber does not exist'],
        [seeded[120], 'Value is invalid'],
      ],
    );
    for (const [i, u] of updates.entries()) {
      if (i !== 7 && i !== 120) assert.equal(await h.valueOf(target, u.contactId), u.value);
    }
    const bulk = since(from).filter((r) => r.path === '/v4/bulk/custom_fields/subscribers');
    // Batches go out side by side: sizes in any order.
    assert.deepEqual(
      bulk
        .map((r) => [(r.body as { custom_field_values: unknown[] }).custom_field_values.length, r.status])
        .sort(),
      [
        [100, 200],
        [100, 200],
        [50, 200],
      ].sort(),
    );
    assert.ok(since(from).every((r) => r.method !== 'PUT' && r.auth === 'oauth2'));
    // The field is looked up once for the whole write, not once per batch.
    assert.equal(since(from).filter((r) => r.method === 'GET' && r.path === '/v4/custom_fields').length, 1);
    assert.deepEqual(h.fake.problems, []);
  });

  it('with an API key, which the bulk endpoints refuse, sends one Update Subscriber per subscriber', async () => {
    const target = await h.connectWithApiKey();
    await h.processor.maintain(target);
    const seeded = await h.seed(target, 30);
    const updates = seeded.map((contactId) => ({ contactId, value: value() }));
    updates.push({ contactId: '999999999', value: value() });
    const from = h.fake.requests.length;
    const results = await h.processor.writeValues(target, updates);
    assert.equal(results.filter((r) => r.status === 'updated').length, 30);
    assert.deepEqual(results[30], {
      contactId: '999999999',
      status: 'rejected',
      reason: 'no such subscriber (deleted since the listing)',
    });
    const puts = since(from).filter((r) => r.method === 'PUT');
    assert.equal(puts.length, 31);
    const first = puts.find((r) => r.path === `/v4/subscribers/${updates[0]!.contactId}`);
    assert.deepEqual(first?.body, { fields: { lcee: updates[0]!.value } });
    assert.ok(since(from).every((r) => r.auth === 'apiKey' && !r.path.startsWith('/v4/bulk')));
    assert.deepEqual(h.fake.problems, []);
  });

  it('does not count a value Kit silently dropped (field deleted mid-run) as written', async () => {
    const target = await h.connectWithApiKey();
    await h.processor.maintain(target);
    const [id] = await h.seed(target, 1);
    await h.deleteField(target);
    await assert.rejects(h.processor.writeValues(target, [{ contactId: id!, value: value() }]), (err) => {
      assert.ok(err instanceof TransientError, String(err));
      return true;
    });
    // The next maintenance re-creates it, and the same write then holds.
    await h.processor.maintain(target);
    const v = value();
    assert.equal(
      (await h.processor.writeValues(target, [{ contactId: id!, value: v }]))[0]!.status,
      'updated',
    );
    assert.equal(await h.valueOf(target, id!), v);
  });

  it('lists active subscribers 1,000 a page, oldest id first, with Kit’s cursor (no email in it)', async () => {
    const target = await h.connectWithApiKey();
    await h.processor.maintain(target);
    const seeded = await h.seed(target, 2_100);
    h.accountOf(target).subscribers[5]!.state = 'cancelled';
    const from = h.fake.requests.length;
    const ids: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await h.processor.listPage(target, cursor, 'full');
      ids.push(...page.contacts.map((c) => c.contactId));
      cursor = page.nextCursor;
      if (cursor) assert.ok(!Buffer.from(cursor, 'base64').toString().includes('@'), cursor);
    } while (cursor);
    assert.deepEqual(
      ids,
      seeded.filter((_, i) => i !== 5),
    );
    const pages = since(from).filter((r) => r.path === '/v4/subscribers');
    assert.equal(pages.length, 3);
    for (const r of pages) {
      assert.equal(r.query.get('per_page'), '1000');
      assert.equal(r.query.get('sort_order'), 'asc');
      assert.equal(r.query.get('status'), 'active');
    }
  });

  it('finds a field created by another run (Kit answers 200 to a label it already has)', async () => {
    const target = await h.connectWithApiKey();
    const account = h.accountOf(target);
    account.fields.set(5, { id: 5, key: 'lcee', label: 'lcee' });
    assert.equal((await h.processor.maintain(target)).field, 'exists');
    assert.equal(account.fields.size, 1);
  });

  it('waits 60 s after Kit’s 429 ("Retry later", no Retry-After), for either credential', async () => {
    for (const target of [await h.connectWithApiKey(), await h.connectWithOAuth!()]) {
      await h.rateLimit(target, true);
      await assert.rejects(h.processor.listPage(target, undefined, 'full'), (err) => {
        assert.ok(err instanceof RateLimitedError, String(err));
        assert.equal(err.retryAfterMs, 60_000);
        return true;
      });
      await h.rateLimit(target, false);
    }
  });

  it('refuses an invalid key without repeating it, and a revoked grant sends the publisher back to connect', async () => {
    await assert.rejects(h.processor.connectWithApiKey('kit_wrong_key_PLANTED'), (err) => {
      assert.ok(err instanceof InvalidCredentialsError && !err.message.includes('kit_wrong_key_PLANTED'));
      return true;
    });
    const target = await h.connectWithOAuth!();
    await h.revokeGrants!(target);
    await assert.rejects(h.processor.maintain(target), InvalidCredentialsError);
  });
});

describe('Kit processor at Kit’s own pace', function () {
  this.timeout(60_000);
  let h: KitHarness;
  before(async () => {
    h = await harness();
  });
  after(() => h.stop());

  /** Gaps between request arrivals at the fake for one account, in ms. */
  const gaps = (accountId: number, from: number) => {
    const at = h.fake.requests
      .slice(from)
      .filter((r) => r.accountId === accountId)
      .map((r) => r.at);
    return at.slice(1).map((t, i) => t - at[i]!);
  };

  it('spaces API-key requests for 120 a minute, and OAuth requests for 600 a minute', async () => {
    // The processor as espresso builds it; the fake's accounts keep Kit's own limits too.
    const paced = new KitProcessor(
      { secrets: h.secrets },
      { oauth: { clientId: h.fake.client.id, clientSecret: h.fake.client.secret }, apiBaseUrl: h.fake.url },
    );
    const keyed = await h.connectWithApiKey();
    const oauth = await h.connectWithOAuth!();
    for (const target of [keyed, oauth]) {
      h.accountOf(target).limitScale = 1;
      await h.processor.maintain(target);
    }
    const keyedIds = await h.seed(keyed, 5);
    const oauthIds = await h.seed(oauth, 5);
    const from = h.fake.requests.length;
    await paced.writeValues(
      keyed,
      keyedIds.map((contactId) => ({ contactId, value: value() })),
    );
    for (const contactId of oauthIds) await paced.writeValues(oauth, [{ contactId, value: value() }]);
    // On average 500 ms and 100 ms apart (arrivals jitter a little around the even starts).
    const keyGaps = gaps(Number(keyed.espAccountId), from);
    const oauthGaps = gaps(Number(oauth.espAccountId), from);
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    assert.equal(keyGaps.length, 4);
    assert.ok(mean(keyGaps) >= 500, `API key gaps ${keyGaps.join(', ')} ms`);
    assert.equal(oauthGaps.length, 9, 'a field look-up and a bulk write per batch');
    assert.ok(mean(oauthGaps) >= 100, `OAuth gaps ${oauthGaps.join(', ')} ms`);
    assert.ok(mean(oauthGaps) < 500, 'OAuth requests do not count against the API key limit');
    assert.deepEqual(h.fake.problems, []);
  });
});

describe('Kit fakes', () => {
  it('saw no request Kit’s reference refuses and no limit crossed in any Kit test above', () => {
    assert.deepEqual(
      fakes.flatMap((f) => f.problems),
      [],
    );
  });
});
