import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import {
  InvalidCredentialsError,
  RateLimitedError,
  RequestRejectedError,
  TransientError,
} from '../../src/processors/errors';
import { BEEHIIV_SCOPES, BeehiivProcessor } from '../../src/processors/beehiiv';
import { beehiivHarness } from './beehiiv-harness';
import { processorContract } from './contract';

const value = () => randomBytes(16).toString('base64url');

processorContract('beehiiv', beehiivHarness);

describe('beehiiv processor', function () {
  this.timeout(60_000);
  let h: Awaited<ReturnType<typeof beehiivHarness>>;
  before(async () => {
    h = await beehiivHarness();
  });
  after(() => h.stop());

  const requestsTo = (path: RegExp, method = 'GET', from = 0) =>
    h.fake.requests
      .slice(from)
      .filter((r) => r.method === method && path.test(new URL(r.url, 'http://x').pathname));

  it('names the field lcee, links with {{lcee}}, connects with a key (OAuth only with an app), writes 1,000 a batch at 2 requests/s', () => {
    const { descriptor } = h.processor;
    assert.equal(h.processor.fieldName(), 'lcee');
    assert.equal(h.processor.fieldName('lcee-v2!'), 'lceev2');
    assert.equal(descriptor.mergeTag('lcee'), '{{lcee}}');
    assert.equal(descriptor.apiKey?.label, 'beehiiv API key');
    assert.equal(
      new BeehiivProcessor({ secrets: h.secrets }).descriptor.oauth2,
      undefined,
      'no app: keys only',
    );
    assert.equal(descriptor.maxBatchSize, 1000);
    // 180 a minute per organization is beehiiv's; espresso keeps to 120.
    assert.deepEqual(h.pacedProcessor.limits(), { concurrency: 4, rate: { requests: 2, perMs: 1000 } });
  });

  it('signs in with OAuth (PKCE S256) for exactly the scopes a whole run needs', async () => {
    const { oauth2 } = h.processor.descriptor;
    assert.deepEqual(oauth2 && [oauth2.authorizeUrl, oauth2.tokenUrl, oauth2.pkce, oauth2.scopes], [
      `${h.fake.origin}/oauth/authorize`,
      `${h.fake.origin}/oauth/token`,
      true,
      BEEHIIV_SCOPES,
    ]);
    const { url } = h.processor.authorizationRequest('http://127.0.0.1:9/cb', 's', 'v'.repeat(43));
    assert.equal(new URL(url).searchParams.get('code_challenge_method'), 'S256');
    // The fake refuses a call outside the token's scopes (403): maintenance, listing and writing
    // all pass with these.
    const target = await h.connectWithOAuth!();
    assert.equal((await h.processor.maintain(target)).field, 'created');
    const seeded = await h.seed(target, 30);
    assert.equal((await h.processor.listPage(target, undefined, 'incremental')).contacts.length, 30);
    const results = await h.processor.writeValues(
      target,
      seeded.map((contactId) => ({ contactId, value: value() })),
    );
    assert.ok(results.every((r) => r.status === 'updated'));
  });

  it("lists the key's publications as lists; the account is the workspace, whichever key", async () => {
    const { organization, apiKey, publications } = h.fake.addOrganization(3);
    const { account } = await h.processor.connectWithApiKey(apiKey);
    assert.equal(account.accountId, organization.id);
    assert.equal(account.accountLabel, organization.name, "the workspace's name, never its owner's email");
    assert.deepEqual(
      account.lists,
      publications.map((p) => ({ id: p.id, name: p.name })),
    );
    // A key restricted to one publication sees only it, and paces with the same account.
    const scoped = h.fake.addKey(organization, [publications[1]!]);
    const { account: narrow } = await h.processor.connectWithApiKey(scoped);
    assert.deepEqual(narrow.lists, [{ id: publications[1]!.id, name: publications[1]!.name }]);
    assert.equal(narrow.accountId, account.accountId);
    // ... and beehiiv answers 404 for the others, which espresso reports without retrying.
    const target = await h.connect(scoped, publications[1]!);
    const other = { ...target, espListId: publications[0]!.id };
    await assert.rejects(h.processor.maintain(other), (err: unknown) => {
      assert.ok(err instanceof RequestRejectedError && err.status === 404, String(err));
      return true;
    });
  });

  it('refuses a key that sees no publication, saying so', async () => {
    const { organization } = h.fake.addOrganization(0);
    await assert.rejects(h.processor.connectWithApiKey(h.fake.addKey(organization)), (err: unknown) => {
      assert.ok(err instanceof RequestRejectedError, String(err));
      assert.match(err.message, /access to no publication/);
      return true;
    });
  });

  it('sends the key as a bearer token and never repeats it in an error', async () => {
    const target = await h.connectWithApiKey();
    const from = h.fake.requests.length;
    await h.processor.maintain(target);
    const { apiKey } = JSON.parse(await h.secrets.get(target.credentialsSecretId)) as { apiKey: string };
    for (const r of h.fake.requests.slice(from)) assert.equal(r.headers.authorization, `Bearer ${apiKey}`);
    h.fake.keys.delete(apiKey);
    await assert.rejects(h.processor.maintain(target), (err: unknown) => {
      assert.ok(err instanceof InvalidCredentialsError, String(err));
      assert.ok(!err.message.includes(apiKey));
      return true;
    });
  });

  it('creates the field as a string custom field of the publication, found by name among many', async () => {
    const target = await h.connectWithApiKey();
    const publication = h.publicationOf(target);
    for (let i = 0; i < 150; i++)
      publication.customFields.set(`other_${i}`, { id: `f${i}`, kind: 'string', created: 0 });
    assert.equal((await h.processor.maintain(target)).field, 'created');
    const [create] = requestsTo(/\/custom_fields$/, 'POST');
    assert.deepEqual(create!.body, { kind: 'string', display: 'lcee' });
    const from = h.fake.requests.length;
    assert.equal((await h.processor.maintain(target)).field, 'exists');
    // 151 fields: the second page of 100 holds it.
    assert.equal(requestsTo(/\/custom_fields$/, 'GET', from).length, 2);
    assert.equal(requestsTo(/\/custom_fields$/, 'POST', from).length, 0);
  });

  it('pages subscriptions by cursor, 100 at a time with custom fields expanded, filtering the empty field itself', async () => {
    const target = await h.connectWithApiKey();
    await h.processor.maintain(target);
    const seeded = await h.seed(target, 250);
    const publication = h.publicationOf(target);
    publication.find(seeded[0]!)!.fields.set('lcee', 'held-value-0123456789');
    const from = h.fake.requests.length;
    const first = await h.processor.listPage(target, undefined, 'incremental');
    assert.equal(first.contacts.length, 99);
    assert.ok(first.nextCursor);
    const [req] = requestsTo(/\/subscriptions$/, 'GET', from);
    const query = new URL(req!.url, 'http://x').searchParams;
    assert.equal(query.get('limit'), '100');
    assert.deepEqual(query.getAll('expand[]'), ['custom_fields']);
    assert.equal(query.get('status'), null, 'every subscription, whatever its status');
    const full = await h.processor.listPage(target, undefined, 'full');
    assert.deepEqual(full.contacts[0], { contactId: seeded[0], currentValue: 'held-value-0123456789' });
    let cursor: string | undefined = first.nextCursor;
    const rest: string[] = [];
    while (cursor) {
      const page = await h.processor.listPage(target, cursor, 'incremental');
      rest.push(...page.contacts.map((c) => c.contactId));
      cursor = page.nextCursor;
    }
    assert.deepEqual(rest, seeded.slice(100));
  });

  it('reads the cursor at the top level (API reference) or under pagination (pagination guide)', async () => {
    const target = await h.connectWithApiKey();
    const seeded = await h.seed(target, 150);
    h.fake.nestCursor = true;
    try {
      const first = await h.processor.listPage(target, undefined, 'full');
      assert.ok(first.nextCursor);
      const second = await h.processor.listPage(target, first.nextCursor, 'full');
      assert.equal(second.nextCursor, undefined);
      assert.deepEqual(
        [...first.contacts, ...second.contacts].map((c) => c.contactId),
        seeded,
      );
    } finally {
      h.fake.nestCursor = false;
    }
  });

  it('writes a batch as one bulk update job, followed to the end, each row once', async () => {
    const target = await h.connectWithApiKey();
    await h.processor.maintain(target);
    const seeded = await h.seed(target, 1_500);
    const from = h.fake.requests.length;
    const updates = seeded.map((contactId) => ({ contactId, value: value() }));
    const results = await h.processor.writeValues(target, updates);
    assert.ok(results.every((r) => r.status === 'updated'));
    const puts = requestsTo(/\/subscriptions\/bulk_actions$/, 'PUT', from);
    assert.deepEqual(
      // The two batches go at once: either may arrive first.
      puts.map((r) => (r.body as { subscriptions: unknown[] }).subscriptions.length).sort((a, b) => b - a),
      [1000, 500],
    );
    const rows = puts.flatMap(
      (r) => (r.body as { subscriptions: Array<{ subscription_id: string }> }).subscriptions,
    );
    assert.deepEqual(new Set(rows.map((r) => r.subscription_id)), new Set(seeded));
    assert.deepEqual(
      rows.find((r) => r.subscription_id === seeded[0]),
      {
        subscription_id: seeded[0],
        custom_fields: [{ name: 'lcee', value: updates[0]!.value }],
      },
    );
    // pending, processing, complete: three polls per job.
    assert.equal(requestsTo(/\/bulk_subscription_updates\//, 'GET', from).length, 6);
  });

  it("maps the job's error log lines to the rows they name, ids redacted from the reasons", async () => {
    const target = await h.connectWithApiKey();
    const seeded = await h.seed(target, 10);
    // No field yet: every row's line names its subscription.
    const results = await h.processor.writeValues(
      target,
      seeded.map((contactId) => ({ contactId, value: value() })),
    );
    assert.ok(
      results.every((r) => r.status === 'rejected' && /custom field lcee does not exist/.test(r.reason)),
    );
    assert.ok(
      results.every((r) => r.status === 'rejected' && !r.reason.includes(r.contactId)),
      'ids redacted',
    );
  });

  it('isolates the row of an error log line that names no subscription, and writes the others', async () => {
    const target = await h.connectWithApiKey();
    await h.processor.maintain(target);
    const seeded = await h.seed(target, 6);
    h.publicationOf(target).refused.add(seeded[2]!);
    h.fake.anonymousErrors = true;
    try {
      const updates = seeded.map((contactId) => ({ contactId, value: value() }));
      const results = await h.processor.writeValues(target, updates);
      assert.deepEqual(
        results.filter((r) => r.status === 'rejected').map((r) => r.contactId),
        [seeded[2]],
      );
      // beehiiv's line names the reader's email: the reason keeps the line, never the email.
      assert.equal(
        (results[2] as { reason: string }).reason,
        "beehiiv's bulk update refused a row: A subscription ([email]) could not be updated: subscription is locked",
      );
      for (const [i, u] of updates.entries()) {
        assert.equal(await h.valueOf(target, u.contactId), i === 2 ? undefined : u.value);
      }
    } finally {
      h.fake.anonymousErrors = false;
    }
  });

  it('isolates the row that fails a whole job, so the other rows are written', async () => {
    const target = await h.connectWithApiKey();
    await h.processor.maintain(target);
    const seeded = await h.seed(target, 8);
    h.publicationOf(target).failJobsWith.add(seeded[5]!);
    const updates = seeded.map((contactId) => ({ contactId, value: value() }));
    const results = await h.processor.writeValues(target, updates);
    const rejected = results.filter((r) => r.status === 'rejected');
    assert.deepEqual(
      rejected.map((r) => r.contactId),
      [seeded[5]],
    );
    assert.match(
      (rejected[0] as { reason: string }).reason,
      /bulk update failed: The update could not be processed/,
    );
    for (const [i, u] of updates.entries()) {
      assert.equal(await h.valueOf(target, u.contactId), i === 5 ? undefined : u.value);
    }
  });

  it('gives up following a job after jobWaitMs with a TransientError (the batch is retried)', async () => {
    const slow = await beehiivHarness({ jobWaitMs: 50 });
    try {
      slow.fake.jobStates = ['pending'];
      const target = await slow.connectWithApiKey();
      await slow.processor.maintain(target);
      const [id] = await slow.seed(target, 1);
      await assert.rejects(
        slow.processor.writeValues(target, [{ contactId: id!, value: value() }]),
        TransientError,
      );
    } finally {
      await slow.stop();
    }
  });

  it("waits until beehiiv's RateLimit-Reset (epoch seconds) after a 429, with no Retry-After", async () => {
    const target = await h.connectWithApiKey();
    const organization = h.publicationOf(target).organization;
    // The organization's 180 a minute (scaled) spent: beehiiv answers 429 until the minute ends.
    organization.window = { minute: Math.floor(Date.now() / 60_000), count: organization.perMinute };
    const resetMs = (organization.window.minute + 1) * 60_000;
    await assert.rejects(h.processor.listPage(target, undefined, 'full'), (err: unknown) => {
      assert.ok(err instanceof RateLimitedError, String(err));
      assert.ok(
        err.retryAfterMs <= resetMs - Date.now() + 1000 && err.retryAfterMs > 0,
        `${err.retryAfterMs}`,
      );
      return true;
    });
    organization.window = { minute: 0, count: 0 };
  });

  it('has a fake that refuses what beehiiv refuses: bulk updates over 1,000, unknown keys, limits over 100, a second field of one name', async () => {
    const target = await h.connectWithApiKey();
    const { apiKey } = JSON.parse(await h.secrets.get(target.credentialsSecretId)) as { apiKey: string };
    const base = `${h.fake.url}/publications/${target.espListId}`;
    const ask = (path: string, init: RequestInit = {}) =>
      fetch(`${base}${path}`, {
        ...init,
        headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
      });
    const rows = Array.from({ length: 1001 }, (_, i) => ({ subscription_id: `sub_${i}` }));
    assert.equal(
      (
        await ask('/subscriptions/bulk_actions', {
          method: 'PUT',
          body: JSON.stringify({ subscriptions: rows }),
        })
      ).status,
      400,
    );
    const extra = { subscriptions: [{ subscription_id: 'sub_1', email: 'a@b.c' }] };
    assert.equal(
      (await ask('/subscriptions/bulk_actions', { method: 'PUT', body: JSON.stringify(extra) })).status,
      400,
    );
    assert.equal((await ask('/subscriptions?limit=101')).status, 400);
    assert.equal((await ask('/subscriptions?filter=lcee')).status, 400);
    assert.equal(
      (await ask('/custom_fields', { method: 'POST', body: JSON.stringify({ kind: 'text', display: 'x' }) }))
        .status,
      400,
    );
    const field = JSON.stringify({ kind: 'string', display: 'twice' });
    assert.equal((await ask('/custom_fields', { method: 'POST', body: field })).status, 200);
    assert.equal((await ask('/custom_fields', { method: 'POST', body: field })).status, 400);
  });

  it('sent no request the fake refuses as malformed (400)', () => {
    const sent = h.fake.requests.filter((r) => /^axios\//.test(String(r.headers['user-agent'])));
    assert.ok(sent.length > 20);
    assert.deepEqual(
      sent.filter((r) => r.status === 400).map((r) => `${r.method} ${r.url}`),
      [],
    );
  });
});
