// The daily run, the schedule, and the README's `temporal` CLI commands, run with the real binary.
import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import { createServer } from 'node:http';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { ScheduleNotFoundError, ScheduleOverlapPolicy } from '@temporalio/client';
import request from 'supertest';
import { auditPage } from '../../src/audit/log';
import { codecEndpoint } from '../../src/codec';
import { projectRoot } from '../../src/paths';
import { SCHEDULE_ID, TASK_QUEUE } from '../../src/temporal/constants';
import { startConfigurationRun } from '../../src/temporal/runs';
import { applySchedule } from '../../src/temporal/schedule';
import { resolveTemporalCli } from '../../src/tools';
import { createApp } from '../../src/web/app';
import { dailySyncWorkflow } from '../../src/workflows';
import { dailyProgressQuery, type DailySummary } from '../../src/workflows/daily-sync';
import type { ConfigurationOutcome } from '../../src/workflows/signals';
import { startEspresso, type Espresso } from '../support/espresso';
import { closeServer, listenLocal } from '../support/listen';
import { endRunsIn, terminateRunning, testPayloadKeys, testPayloadKeysEnv } from '../support/temporal';
import { webDeps } from '../support/web';

const run = promisify(execFile);

/** Every configuration's outcome of a daily run, from its outcome files in the blob store. */
async function dailyOutcomes(e: Espresso, summary: DailySummary) {
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

describe('daily run, schedule and temporal CLI', function () {
  this.timeout(180_000);
  let e: Espresso;
  let temporal: (...args: string[]) => Promise<string>;

  before(async function () {
    const cli = resolveTemporalCli();
    if (cli.source === 'sdk-download') this.skip();
    // The schedule starts workflows on the real task queue, so this worker polls it.
    e = await startEspresso({ taskQueue: TASK_QUEUE });
    const address = e.env.address;
    temporal = async (...args) =>
      (await run(cli.path, [...args, '--address', address], { timeout: 60_000 })).stdout;
  });
  after(async () => {
    if (!e) return;
    try {
      // The schedule would start a daily run on the real task queue each day, and runs still open
      // would wait there for a later test's worker: neither outlives this file.
      await e.client.schedule
        .getHandle(SCHEDULE_ID)
        .delete()
        .catch((err: unknown) => {
          if (!(err instanceof ScheduleNotFoundError)) throw err;
        });
      await terminateRunning(
        e.client,
        `TaskQueue = '${TASK_QUEUE}' AND WorkflowType = 'dailySyncWorkflow'`,
        'the test that started it is over',
      );
      // Daily runs abandon their configuration runs when they end.
      await endRunsIn(e.stores);
    } finally {
      await e.stop();
    }
  });

  const waitForWorkflows = async (query: string, count: number) => {
    const deadline = Date.now() + 60_000;
    for (;;) {
      const found = [];
      for await (const wf of e.client.workflow.list({ query })) found.push(wf);
      const done = found.filter((wf) => wf.status.name !== 'RUNNING');
      if (done.length >= count) return done;
      if (Date.now() > deadline) throw new Error(`${query}: ${done.length}/${count} finished`);
      await new Promise((r) => setTimeout(r, 500));
    }
  };

  it('runs every active configuration; a broken one never stops the others; disabled and needs_reauth ones are skipped with the reason', async () => {
    const good = await e.connect(500);
    const badKey = await e.connect(10);
    await e.stores.secrets.put(
      badKey.configuration.credentialsSecretId,
      JSON.stringify({ kind: 'apiKey', apiKey: 'revoked-key-1' }),
    );
    const noList = await e.connect(10, { espListId: 'list_deleted' });
    const disabled = await e.connect(10, { status: 'disabled' });

    const handle = await e.client.workflow.start(dailySyncWorkflow, {
      taskQueue: TASK_QUEUE,
      workflowId: 'daily/test-2026-11-10',
      args: [{ runDate: '2026-11-10' }],
    });
    const summary = (await handle.result()) as DailySummary;
    const byId = await dailyOutcomes(e, summary);
    assert.equal(byId.get(good.configuration.id)!.outcome, 'completed');
    assert.equal(byId.get(good.configuration.id)!.updated, 500);
    assert.equal(byId.get(badKey.configuration.id)!.outcome, 'needs_reauth');
    assert.equal(byId.get(noList.configuration.id)!.outcome, 'failed');
    assert.match(byId.get(noList.configuration.id)!.reason!, /list_deleted does not exist/);
    assert.equal(byId.get(disabled.configuration.id)!.outcome, 'skipped');
    assert.match(byId.get(disabled.configuration.id)!.reason!, /configuration is disabled/);
    assert.equal(good.list.values.get(good.configuration.fieldName)!.filter(Boolean).length, 500);
    assert.equal(summary.outcomes.completed! >= 1 && summary.outcomes.failed! >= 1, true);
    assert.equal(summary.configurations, byId.size);
    // docs/runs.md, "In the Temporal Web UI": the daily run's `progress` query, as documented.
    assert.deepEqual(await handle.query(dailyProgressQuery), {
      runDate: '2026-11-10',
      configurations: summary.configurations,
      inFlight: 0,
      listedAll: true,
      outcomes: summary.outcomes,
    });

    // Rerunning the same day does not redo a completed configuration, and skips the one that went
    // to needs_reauth, saying why.
    const again = await dailyOutcomes(
      e,
      (await e.client.workflow.execute(dailySyncWorkflow, {
        taskQueue: TASK_QUEUE,
        workflowId: 'daily/test-2026-11-10-again',
        args: [{ runDate: '2026-11-10' }],
      })) as DailySummary,
    );
    assert.equal(again.get(good.configuration.id)!.outcome, 'already_ran');
    assert.equal(again.get(badKey.configuration.id)!.outcome, 'skipped');
    assert.match(again.get(badKey.configuration.id)!.reason!, /configuration is needs_reauth/);
    for (const c of [badKey, noList, disabled])
      await e.stores.configurations.update(c.configuration.id, () => ({ status: 'disabled' }));
  });

  it('applies the espresso-daily schedule idempotently: daily 06:00 UTC, overlapping days allowed, one-day catch-up', async () => {
    const first = await applySchedule(e.client, { hour: 6, minute: 0 }, testPayloadKeys.current);
    const second = await applySchedule(e.client, { hour: 6, minute: 0 }, testPayloadKeys.current);
    assert.equal(first.result, 'created');
    assert.equal(second.result, 'updated');
    assert.equal(second.nextRuns[0]!.getUTCHours(), 6);
    const d = await e.client.schedule.getHandle(SCHEDULE_ID).describe();
    assert.equal(d.policies.overlap, ScheduleOverlapPolicy.ALLOW_ALL);
    assert.equal(d.policies.catchupWindow, 86_400_000);
    assert.equal(d.action.type, 'startWorkflow');
    assert.equal(d.action.type === 'startWorkflow' && d.action.workflowType, 'dailySyncWorkflow');
    assert.deepEqual(d.action.type === 'startWorkflow' && d.action.args, [{}]);

    // README: ESPRESSO_SCHEDULE_TIME and ESPRESSO_DAILY_CONCURRENCY (config.schedule), applied.
    const moved = await applySchedule(
      e.client,
      { hour: 23, minute: 45, dailyConcurrency: 120 },
      testPayloadKeys.current,
    );
    assert.deepEqual([moved.nextRuns[0]!.getUTCHours(), moved.nextRuns[0]!.getUTCMinutes()], [23, 45]);
    const m = await e.client.schedule.getHandle(SCHEDULE_ID).describe();
    assert.deepEqual(m.action.type === 'startWorkflow' && m.action.args, [{ concurrency: 120 }]);
    await applySchedule(e.client, { hour: 6, minute: 0 }, testPayloadKeys.current);
  });

  it('keeps `temporal schedule describe` working and its summary readable without the codec, also over a schedule of an older version', async () => {
    // An older version gave the action an encrypted summary, which the CLI cannot decode.
    await e.client.schedule
      .getHandle(SCHEDULE_ID)
      .delete()
      .catch((err: unknown) => {
        if (!(err instanceof ScheduleNotFoundError)) throw err;
      });
    await e.client.schedule.create({
      scheduleId: SCHEDULE_ID,
      spec: { calendars: [{ hour: 6, minute: 0 }] },
      action: {
        type: 'startWorkflow',
        workflowType: 'dailySyncWorkflow',
        taskQueue: TASK_QUEUE,
        workflowId: 'daily',
        args: [{}],
        staticSummary: 'Daily espresso sync of every active configuration',
      },
    });
    await assert.rejects(temporal('schedule', 'describe', '--schedule-id', SCHEDULE_ID), /could not decode/);
    assert.equal(
      (await applySchedule(e.client, { hour: 6, minute: 0 }, testPayloadKeys.current)).result,
      'updated',
    );
    const described = await temporal('schedule', 'describe', '--schedule-id', SCHEDULE_ID);
    assert.match(described, /dailySyncWorkflow/);
    assert.match(described, /Daily espresso sync of every active configuration/);
  });

  it('shows run summaries to plain `temporal workflow describe`, without the codec; inputs stay encrypted', async () => {
    const { configuration } = await e.connect(10);
    const id = configuration.id;
    const manual = await startConfigurationRun(
      e.client,
      e.stores,
      { configurationId: id, runDate: '2026-11-20', mode: 'incremental' },
      'manual',
    );
    await manual.result();
    await e.client.workflow.execute(dailySyncWorkflow, {
      taskQueue: TASK_QUEUE,
      workflowId: 'daily/test-2026-11-21',
      args: [{ runDate: '2026-11-21' }],
    });
    const describe = (workflowId: string) => temporal('workflow', 'describe', '--workflow-id', workflowId);
    assert.match(
      await describe(manual.workflowId),
      new RegExp(`StaticSummary +"manual incremental sync of ${id} for 2026-11-20"\\n`),
    );
    const child = `sync/${id}/2026-11-21`;
    assert.match(
      await describe(child),
      new RegExp(`StaticSummary +"Daily sync of ${id} \\(sandbox\\) for 2026-11-21"\\n`),
    );
    for (const workflowId of [manual.workflowId, child]) {
      const [started] = (await e.client.workflow.getHandle(workflowId).fetchHistory()).events!;
      const encoding = (p: { metadata?: Record<string, Uint8Array> | null } | null | undefined) =>
        Buffer.from(p?.metadata?.encoding ?? []).toString();
      assert.equal(encoding(started!.userMetadata?.summary), 'json/plain');
      assert.equal(
        encoding(started!.workflowExecutionStartedEventAttributes!.input!.payloads![0]),
        'binary/encrypted',
      );
    }
  });

  it('backfills missed days with `temporal schedule backfill`, each run on its own date', async () => {
    const { configuration } = await e.connect(200);
    await temporal(
      'schedule',
      'backfill',
      '--schedule-id',
      SCHEDULE_ID,
      '--start-time',
      '2026-11-01T00:00:00Z',
      '--end-time',
      '2026-11-03T00:00:00Z',
      '--overlap-policy',
      'BufferAll',
    );
    const runs = await waitForWorkflows(
      `WorkflowType = 'configurationSyncWorkflow' AND EspressoConfigurationId = '${configuration.id}'`,
      2,
    );
    assert.deepEqual(runs.map((r) => r.workflowId).sort(), [
      `sync/${configuration.id}/2026-11-01`,
      `sync/${configuration.id}/2026-11-02`,
    ]);
  });

  it('triggers a run now with `temporal schedule trigger`', async () => {
    const before = new Set<string>();
    for await (const wf of e.client.workflow.list({ query: `WorkflowType = 'dailySyncWorkflow'` }))
      before.add(wf.runId);
    // As the README says: AllowAll, so a daily run still going (here the backfill's) does not drop it.
    await temporal('schedule', 'trigger', '--schedule-id', SCHEDULE_ID, '--overlap-policy', 'AllowAll');
    const deadline = Date.now() + 60_000;
    for (;;) {
      const triggered = [];
      for await (const wf of e.client.workflow.list({ query: `WorkflowType = 'dailySyncWorkflow'` }))
        if (!before.has(wf.runId)) triggered.push(wf);
      if (triggered.some((wf) => wf.status.name === 'COMPLETED')) break;
      if (Date.now() > deadline)
        throw new Error(
          `the triggered daily run did not complete: ${triggered.map((wf) => wf.status.name).join(', ') || 'none started'}`,
        );
      await new Promise((r) => setTimeout(r, 500));
    }
  });

  it('README: `espresso sync` waits and prints the outcome: a dry run what it would do (writing nothing), a full run with --replace-foreign-values what it replaced', async () => {
    const { configuration, list } = await e.connect(20);
    const espresso = async (...args: string[]) =>
      (
        await run(process.execPath, [join(projectRoot, 'dist/src/cli/main.js'), ...args], {
          env: {
            ...process.env,
            ESPRESSO_DATA_DIR: dirname(e.stores.blobs.description.replace(/^local directory /, '')),
            TEMPORAL_ADDRESS: e.env.address,
            ESPRESSO_PAYLOAD_KEYS: testPayloadKeysEnv,
          },
          timeout: 60_000,
        })
      ).stdout;
    const dry = await espresso('sync', configuration.id, '--dry-run');
    assert.match(
      dry,
      /^completed: exported 20, updated 0, rejected 0\n {2}would create field lcee\n {2}would write 20 values\n$/m,
    );
    assert.equal(list.writes, 0);
    assert.ok(!list.fields.has(configuration.fieldName), 'the dry run created the field');

    const field = configuration.fieldName;
    list.fields.set(field, { key: field, label: 'LiveConnect ID', type: 'text' });
    list.write(field, 0, 'legacy42');
    const full = await espresso('sync', configuration.id, '--full', '--replace-foreign-values');
    assert.match(
      full,
      /^completed: exported 20, updated 20, rejected 0\n {2}replaced 1 of 1 value espresso would not write\n$/m,
    );
    // Both starts are in the audit log, by the CLI's user.
    const audited = (await auditPage(e.stores.blobs, { limit: 100 })).entries.filter(
      (a) => a.configurationId === configuration.id,
    );
    assert.deepEqual(
      audited.map((a) => [a.action, /^cli \S+$/.test(a.actor), a.address]),
      [
        ['run', true, 'local'],
        ['dry-run', true, 'local'],
      ],
    );
    assert.notEqual(list.values.get(field)![0], 'legacy42');
  });

  it("README: the admin page's dry run writes nothing to the ESP, and its row says what the run would do", async () => {
    const { configuration, list } = await e.connect(30);
    const token = 't'.repeat(30);
    const app = createApp(
      webDeps(e.stores, async () => e.env.connection, {
        web: { publicUrl: 'http://localhost:3000', sessionSecret: 'x'.repeat(40), admin: { token } },
      }),
    );
    const agent = request.agent(app);
    const page = await agent.get('/admin').set('authorization', `Bearer ${token}`).expect(200);
    const csrf = /name="_csrf" value="([^"]+)"/.exec(page.text)![1]!;
    await agent
      .post(`/admin/configurations/${configuration.id}/dry-run`)
      .set('authorization', `Bearer ${token}`)
      .type('form')
      .send({ _csrf: csrf })
      .expect(303);
    const [started] = await waitForWorkflows(`WorkflowId STARTS_WITH 'sync/${configuration.id}/'`, 1);
    assert.match(started!.workflowId, /\/dry-run-\d{6}-[a-z0-9]{4}$/);
    assert.equal(list.writes, 0);
    assert.ok(!list.fields.has(configuration.fieldName), 'the dry run created the field');
    const after = await agent.get('/admin').set('authorization', `Bearer ${token}`).expect(200);
    assert.match(
      after.text,
      /completed \(dry run\)[^<]*<br>updated 0, rejected 0<br>would create field lcee<br>would write 30 values/,
    );
    const audited = (await auditPage(e.stores.blobs, { limit: 100 })).entries.filter(
      (a) => a.configurationId === configuration.id,
    );
    assert.deepEqual(
      audited.map((a) => [a.action, a.actor, a.detail]),
      [['dry-run', 'operator (admin token)', started!.workflowId]],
    );
  });

  it('starts a full resync with `temporal workflow start`, queries progress, and finds it by ESP', async () => {
    const { configuration } = await e.connect(300);
    const workflowId = `sync/${configuration.id}/2026-11-05/full`;
    const input = JSON.stringify({ configurationId: configuration.id, runDate: '2026-11-05', mode: 'full' });
    // As README shows: --codec-endpoint (the web server's /codec route, capability path).
    const web = createApp(webDeps(e.stores, async () => e.env.connection));
    const server = createServer(web);
    const endpoint = codecEndpoint(
      await listenLocal(server),
      webDeps(e.stores, async () => e.env.connection).web.sessionSecret,
    );
    const query = [
      'workflow',
      'query',
      '--workflow-id',
      workflowId,
      '--type',
      'progress',
      '--output',
      'json',
    ];
    let progress;
    try {
      await temporal(
        'workflow',
        'start',
        '--type',
        'configurationSyncWorkflow',
        '--task-queue',
        TASK_QUEUE,
        '--workflow-id',
        workflowId,
        '--input',
        input,
        '--codec-endpoint',
        endpoint,
      );
      await e.client.workflow.getHandle(workflowId).result();
      // The input went to the server encrypted.
      const history = await e.client.workflow.getHandle(workflowId).fetchHistory();
      const started = history.events![0]!.workflowExecutionStartedEventAttributes!.input!.payloads![0]!;
      assert.equal(Buffer.from(started.metadata!.encoding!).toString(), 'binary/encrypted');
      // The worker encrypts the answer: without the codec server the CLI shows ciphertext only.
      const encrypted = JSON.parse(await temporal(...query));
      assert.doesNotMatch(JSON.stringify(encrypted), /contactsExported/);
      progress = JSON.parse(await temporal(...query, '--codec-endpoint', endpoint));
    } finally {
      await closeServer(server);
    }
    assert.deepEqual(progress.queryResult[0], {
      phase: 'done',
      contactsExported: 300,
      chunksDone: 1,
      chunksTotal: 1,
      updated: 300,
      rejected: 0,
    });
    await waitForWorkflows(`WorkflowId = '${workflowId}' AND EspressoStatus = 'completed'`, 1);
    const listed = await temporal('workflow', 'list', '--query', 'EspressoEsp="sandbox"');
    assert.match(listed, new RegExp(workflowId.replace(/\//g, '\\/')));
  });
});
