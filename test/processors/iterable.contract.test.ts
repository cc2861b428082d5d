import http from 'node:http';
import { strict as assert } from 'node:assert';
import { closeServer, listenLocal } from '../support/listen';
import { randomBytes } from 'node:crypto';
import {
  InvalidCredentialsError,
  RateLimitedError,
  RequestRejectedError,
  TransientError,
} from '../../src/processors/errors';
import type { ContactPage, ProcessorTarget } from '../../src/processors/types';
import type { FakeIterable } from '../fakes/iterable-server';
import { processorContract } from './contract';
import { iterableHarness } from './iterable-harness';

/** Every fake data center this file starts: their recorded requests are checked at the end. */
const fakes: FakeIterable[] = [];
const harness = async () => {
  const h = await iterableHarness();
  fakes.push(h.us, h.eu);
  return h;
};

processorContract('Iterable', harness, { refreshTokens: false });

const value = () => randomBytes(16).toString('base64url');

describe('Iterable processor', function () {
  this.timeout(60_000);
  let h: Awaited<ReturnType<typeof iterableHarness>>;
  before(async () => {
    h = await harness();
  });
  after(() => h.stop());

  async function listAll(target: ProcessorTarget, mode: 'incremental' | 'full') {
    const pages: ContactPage[] = [];
    let cursor: string | undefined;
    do {
      const page = await h.processor.listPage(target, cursor, mode);
      pages.push(page);
      cursor = page.nextCursor;
      if (cursor) assert.match(cursor, /^\d+:\d+:\d+$/, 'cursors hold only job, file and byte numbers');
    } while (cursor);
    return { pages, ids: pages.flatMap((p) => p.contacts.map((c) => c.contactId)) };
  }

  it('names the field lcee and uses Iterable Handlebars merge tags', () => {
    assert.equal(h.processor.fieldName(), 'lcee');
    assert.equal(h.processor.descriptor.mergeTag('lcee'), '{{lcee}}');
    assert.equal(h.processor.descriptor.oauth2, undefined);
    assert.ok(h.processor.descriptor.apiKey);
  });

  it('finds an EU project, keeps its base URL and works there', async () => {
    const target = await h.connect('eu');
    assert.equal(target.apiBaseUrl, h.eu.url);
    assert.match(target.espAccountId, /^eu-\d+$/);
    assert.equal((await h.processor.maintain(target)).field, 'created');
    const seeded = await h.seed(target, 30);
    const results = await h.processor.writeValues(
      target,
      seeded.map((contactId) => ({ contactId, value: value() })),
    );
    assert.ok(results.every((r) => r.status === 'updated'));
    assert.deepEqual((await listAll(target, 'incremental')).ids, []);
    assert.ok(h.eu.requests.some((r) => r.url === '/api/users/bulkUpdate'));
  });

  it('gives one project the same account id for every key check, another project another', async () => {
    const target = await h.connect('us');
    const key = h.projectOf(target).apiKey;
    const again = await h.processor.connectWithApiKey(key);
    assert.equal(again.account.accountId, target.espAccountId);
    assert.equal(again.account.apiBaseUrl, undefined);
    assert.notEqual((await h.connect('us')).espAccountId, target.espAccountId);
  });

  it('waits for the export job, pages through its files and byte ranges, each contact once', async () => {
    const target = await h.connect('us');
    await h.processor.maintain(target);
    const seeded = await h.seed(target, 2_345);
    const before = h.us.requests.length;
    const { pages, ids } = await listAll(target, 'full');
    assert.equal(ids.length, seeded.length);
    assert.deepEqual(new Set(ids), new Set(seeded));
    const sent = h.us.requests.slice(before);
    assert.equal(sent.filter((r) => r.url === '/api/export/start').length, 1);
    assert.ok(
      sent.some((r) => /\/files\?startAfter=file-/.test(r.url)),
      'file list paged with startAfter',
    );
    assert.ok(pages.length > 6, 'several pages per 400-user file');
    // The export asks only for the identifiers and the field.
    assert.deepEqual(
      (sent.find((r) => r.url === '/api/export/start')!.body as { onlyFields: string }).onlyFields,
      'email,userId,lcee',
    );
  });

  it('calls the export endpoints at most once a second, polls and file-list pages included', async () => {
    const target = await h.connect('us');
    await h.processor.maintain(target);
    // Five files, listed three per answer: the file list is paged with startAfter.
    const seeded = await h.seed(target, 1_700);
    const before = h.us.requests.length;
    const { ids } = await listAll(target, 'full');
    assert.deepEqual(new Set(ids), new Set(seeded));
    const exports = h.us.requests
      .slice(before)
      .filter((r) => /^\/api\/export\/(start|\d+\/files)/.test(r.url));
    assert.ok(exports.some((r) => r.url.includes('startAfter=')) && exports.length >= 5, `${exports.length}`);
    assert.deepEqual(
      exports.filter((r) => r.status === 429).map((r) => r.url),
      [],
    );
    for (let i = 1; i < exports.length; i++) {
      const gap = exports[i]!.at - exports[i - 1]!.at;
      assert.ok(gap >= 1_000, `${exports[i - 1]!.url} then ${exports[i]!.url} ${gap} ms apart`);
    }
  });

  it("paces each project alone: two projects of one organization exporting at once meet Iterable's 429", async () => {
    const targets = [await h.connect('us', 'org-shared'), await h.connect('us', 'org-shared')];
    const outcomes = await Promise.allSettled(targets.map((t) => h.processor.startListing(t, 'full')));
    const refused = outcomes.flatMap((o) => (o.status === 'rejected' ? [o.reason as unknown] : []));
    assert.equal(refused.length, 1, 'one of the two starts is refused');
    assert.ok(refused[0] instanceof RateLimitedError, String(refused[0]));
    // No Retry-After from Iterable: espresso's default second, after which the start goes through.
    assert.equal(refused[0].retryAfterMs, 1_000);
  });

  describe('export job states', () => {
    // Export calls are paced a second apart, and a listing page waits 3 s at most for the job: a
    // page that went on waiting for a job that has ended would come back empty (pending).
    let quick: Awaited<ReturnType<typeof iterableHarness>>;
    before(async () => {
      quick = await iterableHarness({ jobWaitMs: 3_000 });
      fakes.push(quick.us, quick.eu);
    });
    afterEach(() => {
      quick.us.jobStates = ['Enqueued', 'Running', 'Completed'];
    });
    after(() => quick.stop());

    for (const end of ['Failed', 'Cancelled', 'cancelled', 'Expired']) {
      it(`fails the listing page, to be retried, once the job ends ${end}`, async () => {
        const target = await quick.connect('us');
        await quick.processor.maintain(target);
        await quick.seed(target, 10);
        quick.us.jobStates = ['Enqueued', end];
        const before = quick.us.requests.length;
        await assert.rejects(quick.processor.listPage(target, undefined, 'full'), (err: unknown) => {
          assert.ok(err instanceof TransientError, String(err));
          assert.equal(err.retryable, true);
          assert.match(err.message, new RegExp(`export job \\d+ ended as ${end}$`));
          return true;
        });
        const polls = quick.us.requests.slice(before).filter((r) => /^\/api\/export\/\d+\/files/.test(r.url));
        assert.equal(polls.length, 2, 'one poll while enqueued, one that sees the end');
      });
    }

    it('reads job states in any letter case: files listed while running, paged once completed', async () => {
      const target = await quick.connect('us');
      await quick.processor.maintain(target);
      // Five files, three per answer: the list is paged with startAfter once the job is completed.
      const seeded = await quick.seed(target, 1_700);
      quick.us.jobStates = ['enqueued', 'running', 'completed'];
      const before = quick.us.requests.length;
      const ids: string[] = [];
      let cursor: string | undefined;
      do {
        const page = await quick.processor.listPage(target, cursor, 'full');
        assert.ok(page.contacts.length > 0 || !page.nextCursor, `the page after ${cursor} waited in vain`);
        ids.push(...page.contacts.map((c) => c.contactId));
        cursor = page.nextCursor;
      } while (cursor);
      assert.deepEqual(ids.sort(), [...seeded].sort());
      assert.ok(quick.us.requests.slice(before).some((r) => r.url.includes('startAfter=')));
    });
  });

  it('still reads each contact once when the file host ignores Range', async () => {
    const target = await h.connect('us');
    await h.processor.maintain(target);
    const seeded = await h.seed(target, 900);
    h.us.ignoreRange = true;
    try {
      const { ids } = await listAll(target, 'full');
      assert.deepEqual(ids.sort(), [...seeded].sort());
    } finally {
      h.us.ignoreRange = false;
    }
  });

  it('never downloads an export file from another place than HTTPS to a named host, nor follows a redirect', async () => {
    const elsewhere = {
      requests: 0,
      server: http.createServer((_req, res) => (elsewhere.requests++, res.end())),
    };
    const origin = await listenLocal(elsewhere.server);
    const target = await h.connect('us');
    await h.processor.maintain(target);
    await h.seed(target, 50);
    try {
      h.us.fileOrigin = origin;
      await assert.rejects(
        listAll(target, 'full'),
        (err: Error) =>
          err instanceof RequestRejectedError &&
          err.message.includes(`a link to ${origin}, which espresso does not download from`),
      );
      h.us.fileOrigin = undefined;
      h.us.redirectFilesTo = origin;
      await assert.rejects(listAll(target, 'full'), /redirect, which espresso does not follow/);
      assert.equal(elsewhere.requests, 0, 'nothing was fetched from elsewhere');
    } finally {
      h.us.fileOrigin = h.us.redirectFilesTo = undefined;
      await closeServer(elsewhere.server);
    }
  });

  it('leaves the field-schema placeholder user out of listings', async () => {
    const target = await h.connect('us');
    await h.processor.maintain(target);
    const seeded = await h.seed(target, 5);
    assert.ok(h.projectOf(target).byUserId('espresso-field-schema'));
    assert.deepEqual((await listAll(target, 'incremental')).ids.sort(), [...seeded].sort());
  });

  it('writes by userId when the user has one, by email otherwise', async () => {
    const target = await h.connect('us');
    await h.processor.maintain(target);
    const seeded = await h.seed(target, 2);
    const withUserId = seeded.find((id) => /^uid:user\d+$/.test(id));
    const emailOnly = seeded.find((id) => /^person\d+@example\.com$/.test(id));
    assert.ok(withUserId && emailOnly);
    const before = h.us.requests.length;
    await h.processor.writeValues(target, [
      { contactId: withUserId!, value: value() },
      { contactId: emailOnly!, value: value() },
    ]);
    const users = (
      h.us.requests.slice(before).find((r) => r.url === '/api/users/bulkUpdate')!.body as {
        users: Array<Record<string, unknown>>;
      }
    ).users;
    assert.deepEqual(Object.keys(users[0]!).sort(), ['dataFields', 'userId']);
    assert.deepEqual(Object.keys(users[1]!).sort(), ['dataFields', 'email']);
  });

  it('rejects a user deleted since the listing instead of re-creating it', async () => {
    const target = await h.connect('us');
    await h.processor.maintain(target);
    // Users with a userId are written by userId, which Iterable never upserts without preferUserId.
    const seeded = (await h.seed(target, 8)).filter((id) => id.startsWith('uid:'));
    const project = h.projectOf(target);
    project.deleteUser(seeded[0]!);
    const count = project.users.length;
    const results = await h.processor.writeValues(
      target,
      seeded.map((contactId) => ({ contactId, value: value() })),
    );
    assert.equal(results[0]!.status, 'rejected');
    assert.equal(project.users.length, count);
    assert.equal(project.find(seeded[0]!), undefined);
    assert.ok(results.slice(1).every((r) => r.status === 'updated'));
  });

  it('never puts contact ids into per-row reasons', async () => {
    const target = await h.connect('us');
    await h.processor.maintain(target);
    const seeded = await h.seed(target, 6);
    await h.rejectRows(target, seeded.slice(0, 2));
    const results = await h.processor.writeValues(
      target,
      seeded.map((contactId) => ({ contactId, value: value() })),
    );
    for (const r of results.slice(0, 2)) {
      assert.ok(r.status === 'rejected');
      assert.match(r.reason, /GDPR/);
      assert.ok(!/user\d/.test(r.reason), r.reason);
      assert.ok(!r.reason.includes('@'), r.reason);
    }
  });

  it('sends at most maxBatchSize users per bulkUpdate', async () => {
    const target = await h.connect('us');
    await h.processor.maintain(target);
    const seeded = await h.seed(target, 2_500);
    const before = h.us.requests.length;
    const results = await h.processor.writeValues(
      target,
      seeded.map((contactId) => ({ contactId, value: value() })),
    );
    assert.ok(results.every((r) => r.status === 'updated'));
    const sizes = h.us.requests
      .slice(before)
      .filter((r) => r.url === '/api/users/bulkUpdate')
      .map((r) => (r.body as { users: unknown[] }).users.length);
    assert.deepEqual(
      sizes.sort((a, b) => b - a),
      [1000, 1000, 500],
    );
  });

  it('turns a 2xx body of the wrong shape into a TransientError', async () => {
    const target = await h.connect('us');
    await h.processor.maintain(target);
    const seeded = await h.seed(target, 3);
    h.us.malformed = true;
    try {
      await assert.rejects(
        h.processor.writeValues(
          target,
          seeded.map((contactId) => ({ contactId, value: value() })),
        ),
        (err: unknown) => err instanceof TransientError && !/person|user\d/.test(err.message),
      );
    } finally {
      h.us.malformed = false;
    }
  });

  it('turns a revoked key into InvalidCredentialsError during maintenance', async () => {
    const target = await h.connect('us');
    h.us.projects.delete(h.projectOf(target).apiKey);
    await assert.rejects(h.processor.maintain(target), InvalidCredentialsError);
  });
});

describe('Iterable requests (all of this file)', () => {
  it('every request carried the Api-Key header, no bearer token, and a body of the documented shape', () => {
    const all = fakes.flatMap((f) => f.requests);
    assert.ok(all.length > 100, `only ${all.length} requests recorded`);
    const routes = new Set(all.map((r) => `${r.method} ${new URL(r.url, 'http://x').pathname}`));
    for (const op of [
      'GET /api/channels',
      'GET /api/users/getFields',
      'POST /api/users/update',
      'POST /api/export/start',
      'POST /api/users/bulkUpdate',
    ]) {
      assert.ok(routes.has(op), `${op} was never exercised`);
    }
    assert.ok(
      all.some((r) =>
        /^GET \/api\/export\/\d+\/files$/.test(`${r.method} ${new URL(r.url, 'http://x').pathname}`),
      ),
      'GET /api/export/{jobId}/files was never exercised',
    );
    for (const r of all) {
      assert.ok(r.headers['api-key'], `${r.method} ${r.url}`);
      assert.equal(r.headers.authorization, undefined);
      if (r.method === 'POST') assert.match(String(r.headers['content-type']), /^application\/json/);
    }
    // 400 is the fake's answer to a body Iterable's document does not allow.
    assert.deepEqual(
      all.filter((r) => r.status === 400).map((r) => `${r.method} ${r.url}`),
      [],
    );
  });
});
