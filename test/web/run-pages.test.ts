// The run history pages over HTTP (supertest) on real local stores: sign-in, paging, escaping,
// bad input, downloads and the checks before a retry. The browser test drives the happy path.
import { strict as assert } from 'node:assert';
import request from 'supertest';
import type { RunSummary } from '../../src/runs/summaries';
import { runFiles } from '../../src/runs/files';
import { recordHistory } from '../../src/runs/history';
import type { Configuration, Stores } from '../../src/storage';
import { createApp } from '../../src/web/app';
import { summaryFor } from '../support/run-summaries';
import { tempStores } from '../support/tmp';
import { webDeps } from '../support/web';

const ADMIN = { user: 'ops', password: 'correct horse battery' };
const field = (html: string, name: string) => new RegExp(`name="${name}" value="([^"]+)"`).exec(html)?.[1];

describe('web: run history pages', () => {
  let stores: Stores;
  let agent: ReturnType<typeof request.agent>;
  let c: Configuration;
  const summaries: RunSummary[] = [];
  const get = (path: string) => agent.get(path).auth(ADMIN.user, ADMIN.password);
  /** An active Sandbox configuration of its own account. */
  const sandboxConfiguration = (accountLabel: string, account: string) =>
    stores.configurations.create({
      esp: 'sandbox',
      accountLabel,
      espAccountId: `acct_${account}`,
      espListId: `list_${account}`,
      fieldName: 'lcee',
      status: 'active',
      maintenance: true,
    });

  before(async () => {
    stores = await tempStores();
    const app = createApp(
      webDeps(
        stores,
        async () => {
          throw new Error('these pages need no Temporal');
        },
        { web: { publicUrl: 'http://localhost:3000', sessionSecret: 'y'.repeat(40), admin: ADMIN } },
      ),
    );
    agent = request.agent(app);
    c = await sandboxConfiguration('Roasters <script>alert(1)</script>', 'pages');
    // 25 daily runs, 2026-11-01 to 2026-11-25; the newest rejected one contact, an email address.
    for (let day = 1; day <= 25; day++) {
      const run = `2026-11-${String(day).padStart(2, '0')}`;
      const s = summaryFor(c.id, run, `${run}T06:00:00.000Z`, {
        reason: day === 25 ? 'partly <b>rejected</b>' : undefined,
      });
      await stores.blobs.put(runFiles.summary(c.id, run), JSON.stringify(s));
      await recordHistory(stores.blobs, s);
      summaries.push(s);
    }
    await stores.blobs.put(
      runFiles.results(c.id, '2026-11-25', 1),
      [
        { contactId: 'c1', value: 'v1', status: 'updated' },
        { contactId: 'c2', value: 'v2', status: 'updated' },
        {
          contactId: 'bob@example.com',
          value: 'v3',
          status: 'rejected',
          reason: 'contact_suppressed: bob@example.com',
        },
      ]
        .map((l) => JSON.stringify(l))
        .join('\n'),
    );
    const dry = summaryFor(c.id, '2026-11-26_dry-run-060000-abcd', '2026-11-26T06:00:00.000Z', {
      dryRun: true,
    });
    await stores.blobs.put(runFiles.summary(c.id, dry.run), JSON.stringify(dry));
    await recordHistory(stores.blobs, dry);
  });

  it('asks for the admin sign-in on every page and download', async () => {
    for (const path of [
      `/admin/configurations/${c.id}`,
      `/admin/configurations/${c.id}/runs/2026-11-25`,
      `/admin/configurations/${c.id}/runs/2026-11-25/results.csv`,
      `/admin/configurations/${c.id}/runs/2026-11-25/retry`,
    ])
      await agent.get(path).expect(401);
    await agent.post(`/admin/configurations/${c.id}/runs/2026-11-25/retry`).expect(401);
  });

  it('pages the runs newest first, 20 a page, escaped', async () => {
    const first = await get(`/admin/configurations/${c.id}`).expect(200);
    const runs = (html: string) => [...html.matchAll(/data-run="([^"]+)"/g)].map((m) => m[1]);
    assert.deepEqual(runs(first.text).slice(0, 3), [
      '2026-11-26_dry-run-060000-abcd',
      '2026-11-25',
      '2026-11-24',
    ]);
    assert.equal(runs(first.text).length, 20);
    assert.ok(!first.text.includes('<script>alert(1)'));
    assert.match(first.text, /Roasters &lt;script&gt;alert\(1\)&lt;\/script&gt;/);
    assert.match(first.text, /No run in progress/);
    assert.doesNotMatch(first.text, /http-equiv="refresh"/);
    const older = /id="older" href="([^"]+)"/.exec(first.text)![1]!.replace(/&amp;/g, '&');
    const second = await get(older).expect(200);
    assert.deepEqual(runs(second.text), [
      '2026-11-06',
      '2026-11-05',
      '2026-11-04',
      '2026-11-03',
      '2026-11-02',
      '2026-11-01',
    ]);
    assert.doesNotMatch(second.text, /id="older"/);
  });

  it('links each configuration and its last run from /admin', async () => {
    await stores.configurations.update(c.id, (doc) => ({
      ...doc,
      lastRun: {
        status: 'completed',
        run: '2026-11-25',
        workflowId: `sync/${c.id}/2026-11-25`,
        finishedAt: '2026-11-25T06:00:00.000Z',
        dryRun: false,
        updated: 2,
        rejected: 1,
      },
    }));
    const admin = await get('/admin').expect(200);
    assert.match(admin.text, new RegExp(`class="configuration" href="/admin/configurations/${c.id}"`));
    assert.match(admin.text, new RegExp(`class="run" href="/admin/configurations/${c.id}/runs/2026-11-25"`));
  });

  it("shows a run's rejections without the contact's email address", async () => {
    const run = await get(`/admin/configurations/${c.id}/runs/2026-11-25`).expect(200);
    assert.match(run.text, /<code>contact_suppressed<\/code><\/td><td>1<\/td>/);
    assert.match(run.text, /data-contact="\[email\]"/);
    assert.match(run.text, /partly &lt;b&gt;rejected&lt;\/b&gt;/);
    assert.ok(!run.text.includes('bob@example.com'));
    const one = await get(`/admin/configurations/${c.id}/runs/2026-11-25?contact=c2`).expect(200);
    assert.match(one.text, /No rejected row of this contact/);
  });

  it('shows no rejected rows for a completed run that counted none, without reading its results', async () => {
    const clean = await sandboxConfiguration('Clean run', 'clean');
    const run = '2026-11-20';
    const s = summaryFor(clean.id, run, `${run}T06:00:00.000Z`, {
      contacts: { exported: 2, alreadySet: 0, updated: 2, rejected: 0 },
      rejectedByKind: {},
    });
    await stores.blobs.put(runFiles.summary(clean.id, run), JSON.stringify(s));
    await recordHistory(stores.blobs, s);
    // A rejected line the run never counted (a hand-edited file): the page does not look for it.
    await stores.blobs.put(
      runFiles.results(clean.id, run, 1),
      JSON.stringify({ contactId: 'c9', value: 'v', status: 'rejected', reason: 'edited' }) + '\n',
    );
    const page = await get(`/admin/configurations/${clean.id}/runs/${run}`).expect(200);
    assert.match(page.text, /No rejected rows\./);
    const search = await get(`/admin/configurations/${clean.id}/runs/${run}?contact=c9`).expect(200);
    assert.match(search.text, /No rejected row of this contact/);
    // Its downloads still hold every line.
    const csv = await get(`/admin/configurations/${clean.id}/runs/${run}/results.csv`).expect(200);
    assert.match(csv.text, /\r\n1,1,c9,rejected,v,edited\r\n/);
  });

  it('streams the results as CSV and JSONL attachments', async () => {
    const base = `/admin/configurations/${c.id}/runs/2026-11-25/results`;
    const csv = await get(`${base}.csv`).expect(200);
    assert.match(csv.headers['content-type']!, /^text\/csv/);
    assert.match(
      csv.headers['content-disposition']!,
      /attachment; filename="?cfg_\w+-2026-11-25-results\.csv/,
    );
    assert.equal(csv.text.split('\r\n').length, 5); // header, 3 rows, the empty end
    const jsonl = await get(`${base}.jsonl`)
      .buffer(true)
      .parse((res, done) => {
        let text = '';
        res.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
        res.on('end', () => done(null, text));
      });
    const lines = (jsonl.body as string)
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { contactId: string });
    assert.deepEqual(
      lines.map((l) => l.contactId),
      ['c1', 'c2', '[email]'],
    );
  });

  it('refuses bad input with a page naming the problem', async () => {
    await get('/admin/configurations/cfg_nope00000000').expect(404);
    await get(`/admin/configurations/${c.id}/runs/2026-10-01`).expect(404);
    await get(`/admin/configurations/${c.id}/runs/..%2F..%2Fsecrets`).expect(404);
    const after = await get(`/admin/configurations/${c.id}?after=../x`).expect(400);
    assert.match(after.text, /not a page of this history/);
    const rows = await get(`/admin/configurations/${c.id}/runs/2026-11-25?after=x`).expect(400);
    assert.match(rows.text, /not a page of these rows/);
  });

  it('retries only after a confirmation with a valid form, and never a dry run', async () => {
    const path = `/admin/configurations/${c.id}/runs/2026-11-25/retry`;
    const confirm = await get(path).expect(200);
    assert.match(confirm.text, /writes this run's values again to its 1 contact that/);
    const csrf = field(confirm.text, '_csrf')!;
    await agent
      .post(path)
      .auth(ADMIN.user, ADMIN.password)
      .type('form')
      .send({ _csrf: 'forged' })
      .expect(403);
    // A run whose export never finished has nothing to write again: refused before Temporal.
    const nothing = await agent
      .post(path)
      .auth(ADMIN.user, ADMIN.password)
      .type('form')
      .send({ _csrf: csrf });
    assert.equal(nothing.status, 409);
    assert.match(nothing.text, /no finished export: nothing to redispatch/);
    const dry = await get(`/admin/configurations/${c.id}/runs/2026-11-26_dry-run-060000-abcd/retry`).expect(
      409,
    );
    assert.match(dry.text, /no failed rows to write again/);
    assert.doesNotMatch(
      (await get(`/admin/configurations/${c.id}/runs/2026-11-26_dry-run-060000-abcd`)).text,
      /id="retry"/,
    );
  });
});
