// `espresso runs list` and `espresso runs show` as typed, on local stores holding finished runs.
import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import type { RunSummary } from '../../src/runs/summaries';
import { projectRoot } from '../../src/paths';
import { runFiles } from '../../src/runs/files';
import { recordHistory } from '../../src/runs/history';
import type { Configuration, Stores } from '../../src/storage';
import { summaryFor } from '../support/run-summaries';
import { tempStores } from '../support/tmp';

const run = promisify(execFile);

describe('cli: espresso runs', function () {
  this.timeout(60_000);
  let stores: Stores;
  let c: Configuration;

  const espresso = async (...args: string[]) => {
    try {
      const { stdout, stderr } = await run(
        process.execPath,
        [join(projectRoot, 'dist/src/cli/main.js'), ...args],
        {
          env: {
            ...process.env,
            ESPRESSO_DATA_DIR: dirname(stores.blobs.description.replace(/^local directory /, '')),
          },
          timeout: 30_000,
        },
      );
      return { code: 0, stdout, stderr };
    } catch (err) {
      const e = err as { code: number; stdout: string; stderr: string };
      return { code: e.code, stdout: e.stdout, stderr: e.stderr };
    }
  };

  before(async () => {
    stores = await tempStores();
    c = await stores.configurations.create({
      esp: 'sandbox',
      accountLabel: 'CLI roasters',
      espAccountId: 'acct_cli',
      espListId: 'list_cli',
      fieldName: 'lcee',
      status: 'active',
      maintenance: true,
    });
    const runs: RunSummary[] = [
      summaryFor(c.id, '2026-12-01', '2026-12-01T06:00:00.000Z'),
      summaryFor(c.id, '2026-12-02', '2026-12-02T06:00:00.000Z', {
        status: 'failed',
        reason: 'the ESP answered 503',
        contacts: { exported: 3, alreadySet: 0, updated: 1, rejected: 2 },
        rejectedByKind: { contact_suppressed: 1, invalid: 1 },
      }),
    ];
    for (const s of runs) {
      await stores.blobs.put(runFiles.summary(c.id, s.run), JSON.stringify(s));
      await recordHistory(stores.blobs, s);
    }
    await stores.blobs.put(
      runFiles.results(c.id, '2026-12-02', 1),
      [
        { contactId: 'c1', value: 'v1', status: 'updated' },
        { contactId: 'c2', value: 'v2', status: 'rejected', reason: 'contact_suppressed: no' },
        { contactId: 'eve@example.com', value: 'v3', status: 'rejected', reason: 'invalid: eve@example.com' },
      ]
        .map((l) => JSON.stringify(l))
        .join('\n'),
    );
  });

  it('lists the runs newest first, as a table, in JSON, and a page at a time', async () => {
    const table = await espresso('runs', 'list', c.id);
    assert.equal(table.code, 0, table.stderr);
    const lines = table.stdout.trim().split('\n');
    assert.match(lines[0]!, /^run +started \(UTC\) +mode +status +exported +updated +rejected +took$/);
    assert.match(lines[1]!, /^2026-12-02 +2026-12-02 06:00:00 +incremental +failed +3 +1 +2 +0\.1 s$/);
    assert.match(lines[2]!, /^2026-12-01 .* completed /);
    const json = await espresso('runs', 'list', c.id, '--json');
    const runs = JSON.parse(json.stdout) as (RunSummary & { temporalUrl: string })[];
    assert.deepEqual(
      runs.map((r) => r.run),
      ['2026-12-02', '2026-12-01'],
    );
    assert.match(runs[0]!.temporalUrl, /\/workflows\/sync%2Fcfg_\w+%2F2026-12-02$/);
    const first = await espresso('runs', 'list', c.id, '--limit', '1');
    const next = /more: espresso runs list \S+ --after (\S+)/.exec(first.stdout)![1]!;
    const second = await espresso('runs', 'list', c.id, '--limit', '1', '--after', next);
    assert.match(second.stdout, /^2026-12-01 /m);
    assert.doesNotMatch(second.stdout, /more:/);
  });

  it('shows a run with its rejections, never an email address', async () => {
    const shown = await espresso('runs', 'show', c.id, '2026-12-02');
    assert.equal(shown.code, 0, shown.stderr);
    assert.match(shown.stdout, /^run 2026-12-02 of cfg_\w+: failed, incremental$/m);
    assert.match(shown.stdout, /^ {2}reason: the ESP answered 503$/m);
    assert.match(shown.stdout, /^ {2}rejected contact_suppressed: 1$/m);
    assert.match(shown.stdout, /^ {2}1:2 {2}c2 {2}contact_suppressed: no$/m);
    assert.match(shown.stdout, /^ {2}1:3 {2}\[email\] {2}invalid: \[email\]$/m);
    assert.ok(!shown.stdout.includes('@'));
    const json = JSON.parse((await espresso('runs', 'show', c.id, '2026-12-02', '--json')).stdout) as {
      summary: RunSummary;
      rejected: { contactId: string }[];
    };
    assert.equal(json.summary.status, 'failed');
    assert.deepEqual(
      json.rejected.map((r) => r.contactId),
      ['c2', '[email]'],
    );
  });

  it('names what is wrong with bad input', async () => {
    const cases: [string[], RegExp][] = [
      [['runs', 'list', 'nope'], /"nope" is not a configuration id/],
      [['runs', 'list', 'cfg_missing00000'], /no configuration cfg_missing00000/],
      [['runs', 'list', c.id, '--after', '../x'], /--after: "..\/x" is not a page of this history/],
      [['runs', 'show', c.id, '2026-13-45'], /no finished run 2026-13-45/],
      [['runs', 'show', c.id, '2026-11-01'], /no finished run 2026-11-01 of cfg_\w+/],
      [['runs', 'show', c.id, 'x'], /run x: a run looks like 2026-11-28/],
    ];
    for (const [args, message] of cases) {
      const out = await espresso(...args);
      assert.equal(out.code, 1, args.join(' '));
      assert.match(out.stderr, message, args.join(' '));
    }
  });
});
