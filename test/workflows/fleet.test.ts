// The daily run as the fleet needs it: pages and continue-as-new, a broken configuration document
// among good ones, a run that passes its deadline; and two worker processes on one rate-limited
// ESP account keeping within its limits.
import { strict as assert } from 'node:assert';
import request from 'supertest';
import { execFile } from 'node:child_process';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { projectRoot } from '../../src/paths';
import { createApp } from '../../src/web/app';
import { dailySyncWorkflow } from '../../src/workflows';
import type { DailySummary } from '../../src/workflows/daily-sync';
import type { ConfigurationOutcome } from '../../src/workflows/signals';
import { pacing } from '../../bench/fleet';
import { startEspresso, type Espresso } from '../support/espresso';
import { webDeps } from '../support/web';

async function outcomesOf(e: Espresso, summary: DailySummary) {
  const byId = new Map<string, ConfigurationOutcome>();
  for (const key of await e.stores.blobs.list(summary.folder)) {
    if (!/outcomes-\d{5}\.jsonl$/.test(key)) continue;
    for await (const line of e.stores.blobs.readLines(key)) {
      const o = JSON.parse(line) as ConfigurationOutcome;
      assert.ok(!byId.has(o.configurationId), `${o.configurationId} has two outcomes`);
      byId.set(o.configurationId, o);
    }
  }
  return byId;
}

describe('the daily run across the fleet', function () {
  this.timeout(300_000);
  let e: Espresso;
  beforeEach(async () => {
    e = await startEspresso();
  });
  afterEach(() => e.stop());

  it('pages through more configurations than a page, continuing as new, each run once', async () => {
    const connected = [];
    for (let i = 0; i < 9; i++) connected.push(await e.connect(50));
    const handle = await e.client.workflow.start(dailySyncWorkflow, {
      taskQueue: e.taskQueue,
      workflowId: `daily/fleet-${Date.now()}`,
      args: [{ runDate: '2026-11-10', pageSize: 2, concurrency: 3, maxHistoryEvents: 40 }],
    });
    const summary = (await handle.result()) as DailySummary;
    assert.equal(summary.outcomes.completed, 9);
    assert.equal(summary.configurations, 9);
    const outcomes = await outcomesOf(e, summary);
    for (const { configuration, list } of connected) {
      assert.equal(outcomes.get(configuration.id)?.outcome, 'completed');
      assert.equal(list.values.get(configuration.fieldName)!.filter(Boolean).length, 50);
    }
    const runs = [];
    for await (const wf of e.client.workflow.list({ query: `WorkflowId = '${handle.workflowId}'` }))
      runs.push(wf);
    assert.ok(runs.length >= 2, `the daily run did not continue as new (${runs.length} run)`);
    // A history looks at its length between steps: past 40 it continues as new at the next look,
    // after the child starts and completions that came meanwhile (3 at once), and the last one
    // writes its outcomes and summary first.
    assert.ok(
      runs.every((r) => r.historyLength <= 70),
      `a daily history grew past its limit: ${runs.map((r) => r.historyLength).join(', ')}`,
    );
  });

  it('writes outcomes in files of at most outcomesPerFile lines, also through pages of configurations it does not start', async () => {
    const active = await e.connect(20);
    const disabled = [];
    for (let i = 0; i < 11; i++) disabled.push(await e.connect(5, { status: 'disabled' }));
    const summary = (await e.client.workflow.execute(dailySyncWorkflow, {
      taskQueue: e.taskQueue,
      workflowId: `daily/outcome-files-${Date.now()}`,
      args: [{ runDate: '2026-11-12', pageSize: 2, outcomesPerFile: 3 }],
    })) as DailySummary;
    const files = (await e.stores.blobs.list(summary.folder)).filter((k) => /outcomes-\d{5}\.jsonl$/.test(k));
    for (const key of files) {
      let lines = 0;
      for await (const _ of e.stores.blobs.readLines(key)) lines++;
      assert.ok(lines >= 1 && lines <= 3, `${key} holds ${lines} outcomes`);
    }
    assert.equal(summary.outcomeFiles, files.length);
    const outcomes = await outcomesOf(e, summary);
    assert.equal(outcomes.size, 12);
    assert.equal(outcomes.get(active.configuration.id)?.outcome, 'completed');
    for (const { configuration } of disabled) {
      assert.equal(outcomes.get(configuration.id)?.outcome, 'skipped');
      assert.match(outcomes.get(configuration.id)!.reason!, /configuration is disabled/);
    }
    assert.deepEqual(summary.outcomes, { completed: 1, skipped: 11 });
  });

  it('completes the good configurations and reports an unreadable document by id; the list and /admin show it', async () => {
    const good = await e.connect(20);
    const bad = await e.connect(20);
    await e.stores.blobs.put(`configurations/${bad.configuration.id}.json`, '{"id": "truncated');
    const summary = (await e.client.workflow.execute(dailySyncWorkflow, {
      taskQueue: e.taskQueue,
      workflowId: `daily/unreadable-${Date.now()}`,
      args: [{ runDate: '2026-11-11' }],
    })) as DailySummary;
    const outcomes = await outcomesOf(e, summary);
    assert.equal(outcomes.get(good.configuration.id)?.outcome, 'completed');
    assert.equal(outcomes.get(bad.configuration.id)?.outcome, 'unreadable');
    assert.match(outcomes.get(bad.configuration.id)!.reason!, /not valid JSON/);
    assert.equal(e.alerts.filter((a) => a.configurationId === bad.configuration.id).length, 1);

    // The CLI, on the same data directory.
    const dataDir = dirname(e.stores.blobs.description.replace(/^local directory /, ''));
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [join(projectRoot, 'dist/src/cli/main.js'), 'configurations', 'list'],
      { env: { ...process.env, ESPRESSO_DATA_DIR: dataDir } },
    );
    assert.match(stdout, new RegExp(`^${bad.configuration.id} .*unreadable`, 'm'));
    assert.match(stdout, new RegExp(`^${good.configuration.id} .*active`, 'm'));

    const app = createApp(
      webDeps(e.stores, async () => e.env.connection, {
        web: {
          publicUrl: 'http://localhost:3000',
          sessionSecret: 'x'.repeat(40),
          admin: { token: 't'.repeat(30) },
        },
      }),
    );
    const admin = await request(app)
      .get('/admin')
      .set('authorization', `Bearer ${'t'.repeat(30)}`)
      .expect(200);
    assert.match(admin.text, new RegExp(`data-configuration="${bad.configuration.id}" class="unreadable"`));
    assert.match(admin.text, /not valid JSON/);
    assert.match(admin.text, new RegExp(`data-configuration="${good.configuration.id}"`));
    const only = await request(app)
      .get('/admin?status=unreadable')
      .set('authorization', `Bearer ${'t'.repeat(30)}`)
      .expect(200);
    assert.ok(!only.text.includes(`data-configuration="${good.configuration.id}"`));
  });

  it('reports a run that passes its deadline as timed_out and finishes, the others completed', async () => {
    const fast = await e.connect(20);
    const slowList = await e.connect(60_000);
    slowList.account.settings.faults.latencyMs = 100;
    {
      const summary = (await e.client.workflow.execute(dailySyncWorkflow, {
        taskQueue: e.taskQueue,
        workflowId: `daily/deadline-${Date.now()}`,
        args: [{ runDate: '2026-11-12', deadlineMs: 4_000 }],
      })) as DailySummary;
      const outcomes = await outcomesOf(e, summary);
      assert.equal(outcomes.get(fast.configuration.id)?.outcome, 'completed');
      assert.equal(outcomes.get(slowList.configuration.id)?.outcome, 'timed_out');
      assert.match(outcomes.get(slowList.configuration.id)!.reason!, /passed its deadline/);
    }
  });
});

describe('two worker processes on one rate-limited ESP account', function () {
  this.timeout(300_000);
  it('keep to its limit: the Sandbox answers no 429 and accepts close to its rate', async () => {
    // Six chunks: some beside the export, one more when it ends, the last ones sharing the account.
    const figures = await pacing(() => undefined, 2, 1, 60_000);
    assert.equal(figures.share429, 0, `${figures.share429} of requests answered 429`);
    assert.ok(
      figures.acceptedPerSecond <= figures.limitRps,
      `${figures.acceptedPerSecond} req/s over the limit`,
    );
  });
});
