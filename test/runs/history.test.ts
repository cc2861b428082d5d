// A configuration's run history and a run's results as pages and downloads read them, on the
// local blob store.
import { strict as assert } from 'node:assert';
import type { RunSummary } from '../../src/runs/summaries';
import { runFiles } from '../../src/runs/files';
import { recordHistory, runHistory } from '../../src/runs/history';
import { csvHeader, csvLine, jsonLine, rejectedRows, runResults } from '../../src/runs/results';
import type { BlobStore } from '../../src/storage';
import { summaryFor } from '../support/run-summaries';
import { tempStores } from '../support/tmp';

const CFG = 'cfg_history0001';
const summaryOf = (run: string, startedAt: string, extra: Partial<RunSummary> = {}) =>
  summaryFor(CFG, run, startedAt, extra);

async function writeResults(blobs: BlobStore, folder: string, chunk: number, lines: object[]) {
  await blobs.put(
    runFiles.results(CFG, folder, chunk),
    lines.map((l) => JSON.stringify(l)).join('\n') + '\n',
  );
}

describe('run history', () => {
  it('pages the runs newest first, whatever their folder names', async () => {
    const { blobs } = await tempStores();
    const runs = [
      summaryOf('2026-12-01', '2026-12-01T06:00:00.000Z'),
      summaryOf('2026-12-01_manual-120000-aaaa', '2026-12-01T12:00:00.000Z'),
      summaryOf('2026-12-02', '2026-12-02T06:00:00.000Z'),
      summaryOf('2026-11-30_dry-run-235900-bbbb', '2026-11-30T23:59:00.000Z', { dryRun: true }),
      summaryOf('2026-12-03', '2026-12-03T06:00:00.000Z'),
    ];
    for (const s of runs) await recordHistory(blobs, s);
    const first = await runHistory(blobs, CFG, { limit: 2 });
    assert.deepEqual(
      first.runs.map((s) => s.run),
      ['2026-12-03', '2026-12-02'],
    );
    const second = await runHistory(blobs, CFG, { after: first.next, limit: 2 });
    assert.deepEqual(
      second.runs.map((s) => s.run),
      ['2026-12-01_manual-120000-aaaa', '2026-12-01'],
    );
    const last = await runHistory(blobs, CFG, { after: second.next, limit: 2 });
    assert.deepEqual(
      last.runs.map((s) => s.run),
      ['2026-11-30_dry-run-235900-bbbb'],
    );
    assert.equal(last.next, undefined);
    assert.deepEqual((await runHistory(blobs, 'cfg_other000001', { limit: 2 })).runs, []);
  });

  it('copies in the runs that finished before histories were kept, once', async () => {
    const { blobs } = await tempStores();
    for (const s of [
      summaryOf('2026-11-01', '2026-11-01T06:00:00.000Z'),
      summaryOf('2026-11-02', '2026-11-02T06:00:00.000Z'),
    ])
      await blobs.put(runFiles.summary(CFG, s.run), JSON.stringify(s));
    await blobs.put(runFiles.contacts(CFG, '2026-11-02', 1), '{"contactId":"c1","value":"v"}\n');
    const page = await runHistory(blobs, CFG, { limit: 10 });
    assert.deepEqual(
      page.runs.map((s) => s.run),
      ['2026-11-02', '2026-11-01'],
    );
    assert.equal((await blobs.list(`history/${CFG}/`)).length, 2);
  });
});

describe('run results', () => {
  let blobs: BlobStore;
  const folder = '2026-12-03';

  before(async () => {
    ({ blobs } = await tempStores());
    await writeResults(blobs, folder, 1, [
      { contactId: 'c1', value: 'v1', status: 'updated' },
      { contactId: 'c2', value: 'v2', status: 'rejected', reason: 'contact_suppressed: c2 unsubscribed' },
      {
        contactId: 'ann@example.com',
        value: 'v3',
        status: 'rejected',
        reason: 'invalid: ann@example.com bounced',
      },
    ]);
    await writeResults(blobs, folder, 2, [
      { contactId: 'c4', value: '=HYPERLINK("x")', status: 'rejected', reason: 'quota, "daily"' },
      { contactId: 'c5', value: 'v5', status: 'updated' },
    ]);
  });

  it('pages the rejected rows across chunk files, with emails left out', async () => {
    const first = await rejectedRows(blobs, CFG, folder, { limit: 2 });
    assert.deepEqual(
      first.rows.map((r) => [r.chunk, r.line, r.contactId, r.kind, r.reason]),
      [
        [1, 2, 'c2', 'contact_suppressed', 'contact_suppressed: c2 unsubscribed'],
        [1, 3, '[email]', 'invalid', 'invalid: [email] bounced'],
      ],
    );
    assert.equal(first.next, '1-3');
    const second = await rejectedRows(blobs, CFG, folder, { after: first.next, limit: 2 });
    assert.deepEqual(
      second.rows.map((r) => [r.chunk, r.line, r.contactId]),
      [[2, 1, 'c4']],
    );
    assert.equal(second.next, undefined);
    const one = await rejectedRows(blobs, CFG, folder, { limit: 2, contactId: 'c4' });
    assert.deepEqual(
      one.rows.map((r) => r.reason),
      ['quota, "daily"'],
    );
  });

  it("finds one contact's rejected rows by its id however its line is written, and a shown placeholder as before", async () => {
    const other = '2026-12-04';
    await blobs.put(
      runFiles.results(CFG, other, 1),
      [
        '{"contactId":"c10","value":"v","status":"rejected","reason":"r1"}',
        '{"contactId":1234,"value":"v","status":"rejected","reason":"a number"}',
        'not json',
        '{"contactId":"c1","value":"v","status":"rejected","reason":"r2"}',
        '{"contactId":"bob@example.com","value":"v","status":"rejected","reason":"an email"}',
      ].join('\n') + '\n',
    );
    // c10's line holds "c1" too: it is read, and is not c1's row.
    const c1 = await rejectedRows(blobs, CFG, other, { limit: 10, contactId: 'c1' });
    assert.deepEqual(
      c1.rows.map((r) => [r.line, r.reason]),
      [[4, 'r2']],
    );
    const numeric = await rejectedRows(blobs, CFG, other, { limit: 10, contactId: '1234' });
    assert.deepEqual(
      numeric.rows.map((r) => r.reason),
      ['a number'],
    );
    // The page shows emails as [email]; searching for that finds them, as it always did.
    const emails = await rejectedRows(blobs, CFG, other, { limit: 10, contactId: '[email]' });
    assert.deepEqual(
      emails.rows.map((r) => [r.line, r.reason]),
      [[5, 'an email']],
    );
  });

  it('writes CSV and JSONL a spreadsheet and a script read back as they were', async () => {
    const rows = [];
    for await (const row of runResults(blobs, CFG, folder)) rows.push(row);
    assert.equal(rows.length, 5);
    const csv = csvHeader + rows.map(csvLine).join('');
    assert.equal(
      csv,
      'chunk,line,contactId,status,value,reason\r\n' +
        '1,1,c1,updated,v1,\r\n' +
        '1,2,c2,rejected,v2,contact_suppressed: c2 unsubscribed\r\n' +
        '1,3,[email],rejected,v3,invalid: [email] bounced\r\n' +
        `2,1,c4,rejected,"'=HYPERLINK(""x"")","quota, ""daily"""\r\n` +
        '2,2,c5,updated,v5,\r\n',
    );
    assert.ok(!csv.includes('@'));
    const jsonl = rows.map(jsonLine).join('');
    assert.deepEqual(JSON.parse(jsonl.split('\n')[3]!), {
      chunk: 2,
      line: 1,
      contactId: 'c4',
      status: 'rejected',
      value: '=HYPERLINK("x")',
      reason: 'quota, "daily"',
    });
  });
});
