import http from 'node:http';
import { strict as assert } from 'node:assert';
import { closeServer, listenLocal } from '../support/listen';
import { randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { RateLimitedError, RequestRejectedError, TransientError } from '../../src/processors/errors';
import { SendGridProcessor } from '../../src/processors/sendgrid';
import type { ContactUpdate, ProcessorTarget } from '../../src/processors/types';
import { FakeSendGrid } from '../fakes/sendgrid-server';
import { OpenApiSpec } from '../support/openapi';
import { tempDir } from '../support/tmp';
import { processorContract } from './contract';
import { sendgridHarness } from './sendgrid-harness';

// Every fake started in this file, so every request the processor sent is checked at the end.
const fakes: FakeSendGrid[] = [];
const value = () => randomBytes(16).toString('base64url');

async function harness(options: Parameters<typeof sendgridHarness>[0] = {}) {
  const h = await sendgridHarness(options);
  const { connectWithApiKey } = h;
  fakes.push(h.fake);
  return Object.assign(h, {
    async connectWithApiKey() {
      const target = await connectWithApiKey();
      fakes.push(...h.fakes.filter((f) => !fakes.includes(f)));
      return target;
    },
  });
}

processorContract('SendGrid', () => harness(), { refreshTokens: false });

describe('SendGrid processor', function () {
  this.timeout(60_000);
  let h: Awaited<ReturnType<typeof harness>>;
  let target: ProcessorTarget;
  let fake: FakeSendGrid;
  before(async () => {
    h = await harness({ pageSize: 400 });
  });
  after(() => h.stop());
  beforeEach(async () => {
    target = await h.connectWithApiKey();
    fake = h.fakes[h.fakes.length - 1]!;
    await h.processor.maintain(target);
  });

  const listAll = async (mode: 'full' | 'incremental', t = target, processor = h.processor) => {
    const ids: string[] = [];
    const cursors: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await processor.listPage(t, cursor, mode);
      ids.push(...page.contacts.map((c) => c.contactId));
      cursor = page.nextCursor;
      if (cursor) cursors.push(cursor);
    } while (cursor);
    return { ids, cursors };
  };
  const puts = () =>
    fake.exchanges.filter((e) => e.method === 'PUT' && e.url.startsWith('/v3/marketing/contacts'));

  it('describes the account by its SendGrid user id and username, with no lists', async () => {
    const { account } = await h.processor.connectWithApiKey(h.apiKey);
    assert.deepEqual(account, { accountId: String(h.fake.userId), accountLabel: h.fake.username, lists: [] });
  });

  it('finds an EU regional subuser on the EU host and keeps that host for the configuration', async () => {
    const eu = await new FakeSendGrid().start();
    fakes.push(eu);
    try {
      const euKey = 'SG.eu-subuser-key.0123456789abcdefghijklmnopqrstuvwxyz';
      eu.apiKeys.clear();
      eu.apiKeys.add(euKey);
      const processor = new SendGridProcessor(
        { secrets: h.secrets },
        { apiBaseUrl: h.fake.url, euApiBaseUrl: eu.url, jobPollMs: 5, tmpDir: h.tmp },
      );
      const { account } = await processor.connectWithApiKey(euKey);
      assert.equal(account.apiBaseUrl, eu.url);
      assert.equal(account.accountId, String(eu.userId));
      // A key neither host knows is refused with the first host's answer.
      await assert.rejects(processor.connectWithApiKey('SG.nobody.0123456789'), /credentials not accepted/);
    } finally {
      await eu.stop();
    }
  });

  it('names the field lcee (Text) and uses the {{lcee}} merge tag', () => {
    const { descriptor } = h.processor;
    assert.equal(h.processor.fieldName(), 'lcee');
    assert.equal(h.processor.fieldName('my-field 1'), 'myfield1');
    assert.equal(descriptor.mergeTag('lcee'), '{{lcee}}');
    assert.deepEqual(fake.field('lcee'), { id: fake.field('lcee')!.id, name: 'lcee', field_type: 'Text' });
    assert.ok(descriptor.apiKey && !descriptor.oauth2);
  });

  it('refuses a field of the same name that is not Text', async () => {
    fake.deleteField('lcee');
    fake.fields.push({ id: 'e99_N', name: 'LCEE', field_type: 'Number' });
    await assert.rejects(h.processor.maintain(target), RequestRejectedError);
  });

  it('pages through an export split into several files, each contact once, by byte offset', async () => {
    fake.exportFileContacts = 700;
    const seeded = fake.seed(2_345);
    const { ids, cursors } = await listAll('full');
    assert.equal(ids.length, seeded.length);
    assert.deepEqual(new Set(ids), new Set(seeded));
    // Four files (700 each), pages of at most 400: the cursor moves through every file.
    assert.deepEqual(new Set(cursors.map((c) => c.split('~')[1])), new Set(['0', '1', '2', '3']));
    for (const c of cursors) {
      assert.ok(c.length < 80 && !c.includes('@'), c);
      assert.ok(!c.includes(h.apiKey));
    }
    assert.deepEqual(
      (await readdir(h.tmp)).filter((f) => f.startsWith('espresso-sendgrid-')),
      [],
      'downloads removed',
    );
  });

  it('resumes from a cursor in another worker (no local download) without repeating contacts', async () => {
    const seeded = fake.seed(1_000);
    const first = await h.processor.listPage(target, undefined, 'full');
    const other = new SendGridProcessor(
      { secrets: h.secrets },
      {
        apiBaseUrl: fake.url,
        jobPollMs: 5,
        pageSize: 400,
        tmpDir: await tempDir('espresso-sendgrid-other-'),
      },
    );
    let cursor = first.nextCursor;
    assert.ok(cursor);
    const resumed: string[] = [];
    do {
      const page = await other.listPage(target, cursor, 'full');
      resumed.push(...page.contacts.map((c) => c.contactId));
      cursor = page.nextCursor;
    } while (cursor);
    const listed = [...first.contacts.map((c) => c.contactId), ...resumed];
    assert.equal(listed.length, seeded.length);
    assert.deepEqual(new Set(listed), new Set(seeded));
  });

  it('returns an empty page with a cursor while the export is still pending', async () => {
    const seeded = fake.seed(30);
    fake.pendingPolls = 4;
    const slow = new SendGridProcessor(
      { secrets: h.secrets },
      { apiBaseUrl: fake.url, jobPollMs: 5, exportWaitMs: 0, tmpDir: h.tmp },
    );
    try {
      const page = await slow.listPage(target, undefined, 'full');
      assert.deepEqual(page.contacts, []);
      assert.ok(page.nextCursor);
      let cursor: string | undefined = page.nextCursor;
      const listed: string[] = [];
      while (cursor) {
        const next = await slow.listPage(target, cursor, 'full');
        listed.push(...next.contacts.map((c) => c.contactId));
        cursor = next.nextCursor;
      }
      assert.deepEqual(new Set(listed), new Set(seeded));
    } finally {
      fake.pendingPolls = 1;
    }
  });

  it('skips contacts without an email when listing, and rejects them when written', async () => {
    const seeded = fake.seed(5);
    const phoneOnly = fake.seedEmail('');
    const { ids } = await listAll('incremental');
    assert.deepEqual(new Set(ids), new Set(seeded));
    const [result] = await h.processor.writeValues(target, [{ contactId: phoneOnly, value: value() }]);
    assert.equal(result!.status, 'rejected');
  });

  it('polls the asynchronous upsert job until it completes', async () => {
    fake.pendingPolls = 3;
    try {
      const seeded = fake.seed(10);
      const updates = seeded.map((contactId) => ({ contactId, value: value() }));
      const results = await h.processor.writeValues(target, updates);
      assert.ok(results.every((r) => r.status === 'updated'));
      for (const u of updates) assert.equal(fake.valueOf(u.contactId, 'lcee'), u.value);
      const polls = fake.exchanges.filter((e) => e.url.startsWith('/v3/marketing/contacts/imports/'));
      assert.equal(polls.length, 4);
    } finally {
      fake.pendingPolls = 1;
    }
  });

  it('never sends more than 1,000 contacts per upsert nor 100 ids per lookup', async () => {
    const seeded = fake.seed(2_500);
    const results = await h.processor.writeValues(
      target,
      seeded.map((contactId) => ({ contactId, value: value() })),
    );
    assert.ok(results.every((r) => r.status === 'updated'));
    const sizes = puts().map((e) => (e.body as { contacts: unknown[] }).contacts.length);
    assert.deepEqual(
      sizes.sort((a, b) => a - b),
      [500, 1000, 1000],
    );
    const lookups = fake.exchanges.filter((e) => e.url === '/v3/marketing/contacts/batch');
    assert.ok(lookups.every((e) => (e.body as { ids: string[] }).ids.length <= 100));
    assert.equal(lookups.length, 25);
  });

  it('rejects a contact deleted since the export instead of re-creating it', async () => {
    const seeded = fake.seed(10);
    const gone = fake.contacts.get(seeded[4]!)!;
    fake.contacts.delete(gone.id);
    const results = await h.processor.writeValues(
      target,
      seeded.map((contactId) => ({ contactId, value: value() })),
    );
    const rejected = results.filter((r) => r.status === 'rejected');
    assert.deepEqual(
      rejected.map((r) => r.contactId),
      [gone.id],
    );
    assert.equal(fake.byEmail(gone.email), undefined, 'not re-created');
    const sent = puts().flatMap((e) => (e.body as { contacts: Array<{ email: string }> }).contacts);
    assert.ok(!sent.some((c) => c.email === gone.email));
  });

  it('deletes a contact the upsert re-created when it was deleted during the update', async () => {
    const seeded = fake.seed(10);
    const victim = fake.contacts.get(seeded[7]!)!;
    fake.beforeApply = () => {
      fake.contacts.delete(victim.id);
      fake.beforeApply = undefined;
    };
    const results = await h.processor.writeValues(
      target,
      seeded.map((contactId) => ({ contactId, value: value() })),
    );
    const byId = new Map(results.map((r) => [r.contactId, r]));
    assert.equal(byId.get(victim.id)!.status, 'rejected');
    assert.equal(results.filter((r) => r.status === 'updated').length, 9);
    assert.equal(fake.byEmail(victim.email), undefined, 'the re-created contact is removed');
  });

  it('sends back every identifier a contact has, as SendGrid requires to update it', async () => {
    const plain = fake.seed(3);
    const external = fake.seedEmail('crm-person@example.com', { external_id: 'crm-1001' });
    const several = fake.seedEmail('app-person@example.com', {
      phone_number_id: '+14155550123',
      anonymous_id: 'anon-7f3a',
    });
    const updates = [...plain, external, several].map((contactId) => ({ contactId, value: value() }));
    const results = await h.processor.writeValues(target, updates);
    assert.deepEqual(
      results.map((r) => r.status),
      updates.map(() => 'updated'),
      JSON.stringify(results),
    );
    for (const u of updates) assert.equal(fake.valueOf(u.contactId, 'lcee'), u.value);
    const sent = puts().flatMap((e) => (e.body as { contacts: Array<Record<string, unknown>> }).contacts);
    const identifiers = (email: string) => {
      const { custom_fields: _, ...rest } = sent.find((c) => c.email === email)!;
      return rest;
    };
    assert.deepEqual(identifiers('crm-person@example.com'), {
      email: 'crm-person@example.com',
      external_id: 'crm-1001',
    });
    assert.deepEqual(identifiers('app-person@example.com'), {
      email: 'app-person@example.com',
      phone_number_id: '+14155550123',
      anonymous_id: 'anon-7f3a',
    });
    const email = fake.contacts.get(plain[0]!)!.email;
    assert.deepEqual(identifiers(email), { email });
  });

  it('has a fake that, like SendGrid, fails the row of an update omitting an identifier the contact has', async () => {
    const id = fake.seedEmail('crm-only@example.com', { external_id: 'crm-2002' });
    const request = (method: string, path: string, body?: unknown) =>
      fetch(`${fake.url}${path}`, {
        method,
        headers: { authorization: `Bearer ${h.apiKey}`, 'content-type': 'application/json' },
        ...(body ? { body: JSON.stringify(body) } : {}),
      });
    const accepted = await request('PUT', '/v3/marketing/contacts', {
      contacts: [{ email: 'crm-only@example.com', custom_fields: { [fake.field('lcee')!.id]: 'v1' } }],
    });
    // Accepted as valid: the contact's identifiers are checked when the job runs.
    assert.equal(accepted.status, 202);
    const { job_id } = (await accepted.json()) as { job_id: string };
    let job: { status: string; results: { errored_count?: number; errors_url?: string } };
    do {
      job = (await (await request('GET', `/v3/marketing/contacts/imports/${job_id}`)).json()) as typeof job;
    } while (job.status === 'pending');
    assert.equal(job.status, 'failed');
    assert.equal(job.results.errored_count, 1);
    const errors = await (await fetch(job.results.errors_url!)).text();
    assert.match(errors, /crm-only@example\.com,.*external_id/);
    assert.equal(fake.valueOf(id, 'lcee'), undefined);
  });

  it('leaves addresses over 100 characters out of the email search, and writes the batch once', async () => {
    // 137 characters: upserts take up to 254, the email search at most 100.
    const long = `${'a'.repeat(64)}@${'b'.repeat(60)}.example.com`;
    const longId = fake.seedEmail(long);
    const seeded = fake.seed(8);
    const victim = fake.contacts.get(seeded[3]!)!;
    fake.beforeApply = () => {
      fake.contacts.delete(victim.id);
      fake.beforeApply = undefined;
    };
    const updates = [longId, ...seeded].map((contactId) => ({ contactId, value: value() }));
    const results = await h.processor.writeValues(target, updates);
    const byId = new Map(results.map((r) => [r.contactId, r]));
    assert.equal(byId.get(victim.id)!.status, 'rejected');
    assert.equal(results.filter((r) => r.status === 'updated').length, 8, JSON.stringify(results));
    assert.equal(fake.valueOf(longId, 'lcee'), updates[0]!.value);
    assert.equal(fake.byEmail(victim.email), undefined, 'the re-created contact is removed');
    assert.equal(puts().length, 1, 'the batch is not written again');
    const searched = fake.exchanges
      .filter((e) => e.url === '/v3/marketing/contacts/search/emails')
      .flatMap((e) => (e.body as { emails: string[] }).emails);
    assert.deepEqual(searched, [victim.email]);
  });

  it('rejects a contact deleted during the update whose copy it cannot remove, saying why', async () => {
    const long = `${'c'.repeat(64)}@${'d'.repeat(60)}.example.com`;
    const longId = fake.seedEmail(long);
    const seeded = fake.seed(4);
    const lagging = fake.contacts.get(seeded[1]!)!;
    fake.unindexed.add(lagging.email);
    fake.beforeApply = () => {
      fake.contacts.delete(longId);
      fake.contacts.delete(lagging.id);
      fake.beforeApply = undefined;
    };
    const results = await h.processor.writeValues(
      target,
      [longId, ...seeded].map((contactId) => ({ contactId, value: value() })),
    );
    const byId = new Map(results.map((r) => [r.contactId, r]));
    const tooLong = byId.get(longId)!;
    assert.ok(
      tooLong.status === 'rejected' && /100 characters/.test(tooLong.reason),
      JSON.stringify(tooLong),
    );
    const unfound = byId.get(lagging.id)!;
    assert.ok(
      unfound.status === 'rejected' && /no copy was found/.test(unfound.reason),
      JSON.stringify(unfound),
    );
    for (const r of results) if (r.status === 'rejected') assert.ok(!r.reason.includes('@'), r.reason);
    assert.equal(results.filter((r) => r.status === 'updated').length, 3);
    assert.equal(puts().length, 1, 'the batch is not written again');
    // The copies stay: espresso could not find them (the rejection says so).
    assert.ok(fake.byEmail(long) && fake.byEmail(lagging.email));
  });

  it("maps the upsert's row pointers (contacts[i]) to the rows, and the job's errors file to reasons", async () => {
    const seeded = fake.seed(6);
    const bad = fake.seedEmail('not-an-email');
    const suppressed = seeded[2]!;
    fake.rejectedEmails.add(fake.contacts.get(suppressed)!.email);
    const updates: ContactUpdate[] = [...seeded, bad].map((contactId) => ({ contactId, value: value() }));
    const results = await h.processor.writeValues(target, updates);
    const byId = new Map(results.map((r) => [r.contactId, r]));
    const badResult = byId.get(bad)!;
    assert.ok(badResult.status === 'rejected' && /email/.test(badResult.reason), JSON.stringify(badResult));
    const supp = byId.get(suppressed)!;
    assert.ok(supp.status === 'rejected' && /suppression/.test(supp.reason), JSON.stringify(supp));
    for (const r of results) if (r.status === 'rejected') assert.ok(!r.reason.includes('@'), r.reason);
    assert.equal(results.filter((r) => r.status === 'updated').length, 5);
    // One PUT with the bad row, then the other rows again without it (no bisection).
    assert.equal(puts().length, 2);
  });

  it('never downloads from a link to another place than HTTPS to a named host, nor follows a redirect', async () => {
    const elsewhere = {
      requests: 0,
      server: http.createServer((_req, res) => (elsewhere.requests++, res.end())),
    };
    const origin = await listenLocal(elsewhere.server);
    try {
      fake.seed(5);
      fake.fileOrigin = origin;
      await assert.rejects(
        listAll('full'),
        (err: Error) =>
          err instanceof RequestRejectedError &&
          err.message.includes(`a link to ${origin}, which espresso does not download from`) &&
          !err.message.includes('Signature'),
      );
      fake.fileOrigin = undefined;
      fake.redirectFilesTo = origin;
      await assert.rejects(
        listAll('full'),
        /the link answered with a redirect, which espresso does not follow/,
      );
      assert.equal(elsewhere.requests, 0, 'nothing was fetched from elsewhere');
    } finally {
      fake.fileOrigin = fake.redirectFilesTo = undefined;
      await closeServer(elsewhere.server);
    }
  });

  it("turns SendGrid's X-RateLimit-Reset (epoch seconds) into retryAfterMs", async () => {
    fake.rateLimitResetIn = 20;
    fake.rateLimited = true;
    try {
      const answer = await fetch(`${fake.url}/v3/marketing/field_definitions`, {
        headers: { authorization: `Bearer ${[...fake.apiKeys][0]}` },
      });
      assert.equal(answer.status, 429);
      assert.deepEqual(
        [...answer.headers.keys()].filter((k) => /rate|retry/i.test(k)).sort(),
        ['x-ratelimit-limit', 'x-ratelimit-remaining', 'x-ratelimit-reset'],
        'the headers SendGrid documents, and no Retry-After',
      );
      await assert.rejects(h.processor.listPage(target, undefined, 'full'), (err: unknown) => {
        assert.ok(err instanceof RateLimitedError, String(err));
        // The header has one-second resolution.
        assert.ok(err.retryAfterMs > 18_000 && err.retryAfterMs <= 20_000, String(err.retryAfterMs));
        return true;
      });
    } finally {
      fake.rateLimited = false;
    }
  });

  it('turns a malformed 2xx body into TransientError', async () => {
    const seeded = fake.seed(3);
    fake.malformed = /^\/v3\/marketing\/contacts\/batch$/;
    try {
      await assert.rejects(
        h.processor.writeValues(
          target,
          seeded.map((contactId) => ({ contactId, value: value() })),
        ),
        TransientError,
      );
    } finally {
      fake.malformed = undefined;
    }
    fake.malformed = /^\/v3\/marketing\/field_definitions$/;
    try {
      await assert.rejects(h.processor.maintain(target), TransientError);
    } finally {
      fake.malformed = undefined;
    }
  });
});

describe('SendGrid requests and fake answers match the official OpenAPI document', () => {
  it('every request the processor sent, and every 2xx answer of the fake', () => {
    const spec = new OpenApiSpec('sendgrid.com');
    const exchanges = fakes.flatMap((f) => f.exchanges);
    assert.ok(exchanges.length > 100, `only ${exchanges.length} requests recorded`);
    const problems = exchanges.flatMap((e) => spec.requestProblems(e));
    assert.deepEqual(problems, []);
    const answers = exchanges
      .filter((e) => e.status >= 200 && e.status < 300)
      // Two places where the document cannot describe SendGrid's answers: DELETE /marketing/contacts
      // types job_id as an object (a string is sent), and search/emails keys its result by email
      // through `x-patternProperties` next to `additionalProperties: false`, so its own example fails.
      .filter((e) => e.method !== 'DELETE' && !e.url.startsWith('/v3/marketing/contacts/search/emails'))
      .flatMap((e) => spec.responseProblems(e.method, e.url, e.status, e.response));
    assert.deepEqual(answers, []);
    const routes = new Set(exchanges.map((e) => `${e.method} ${spec.route(e.method, e.url)}`));
    for (const r of [
      'GET /user/username',
      'GET /marketing/field_definitions',
      'POST /marketing/field_definitions',
      'POST /marketing/contacts/exports',
      'GET /marketing/contacts/exports/{id}',
      'POST /marketing/contacts/batch',
      'PUT /marketing/contacts',
      'GET /marketing/contacts/imports/{id}',
      'POST /marketing/contacts/search/emails',
      'DELETE /marketing/contacts',
    ]) {
      assert.ok(routes.has(r), `${r} not exercised`);
    }
  });
});
