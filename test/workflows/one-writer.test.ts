// One writer per configuration: however a run starts, at most one writes a configuration at a
// time, and no run replaces a value a contact holds. Every way a run ends leaves its status, its
// summary and one alert per change; cancellation and deadlines stop the writing.
import { strict as assert } from 'node:assert';
import { setTimeout as sleep } from 'node:timers/promises';
import { WorkflowFailedError } from '@temporalio/client';
import { tsToMs } from '@temporalio/common/lib/time';
import type { temporal } from '@temporalio/proto';
import request from 'supertest';
import type { RunSummary } from '../../src/runs/summaries';
import { accountLockKey } from '../../src/runs/account-lock';
import { runFiles } from '../../src/runs/files';
import { NotFoundError } from '../../src/storage';
import { RunInProgressError, runningWriter, startConfigurationRun } from '../../src/temporal/runs';
import { createApp } from '../../src/web/app';
import { configurationSyncWorkflow } from '../../src/workflows';
import type { SandboxAccount } from '../../src/sandbox/state';
import type { ConfigurationSyncInput } from '../../src/workflows/configuration-sync';
import { startEspresso, type Espresso } from '../support/espresso';
import { webDeps } from '../support/web';

const DAY = '2026-11-28';
const ADMIN = { user: 'ops', password: 'one writer at a time' };

describe('one writer per configuration', function () {
  this.timeout(300_000);
  let e: Espresso;
  before(async () => {
    e = await startEspresso();
  });
  after(() => e.stop());

  const start = (input: ConfigurationSyncInput, workflowId: string) =>
    e.client.workflow.start(configurationSyncWorkflow, { taskQueue: e.taskQueue, workflowId, args: [input] });
  /** Every request the account's Sandbox answers takes this long: runs last long enough to be overlapped. */
  const slow = (account: SandboxAccount, ms: number) => void (account.settings.faults.latencyMs = ms);
  const summaryOf = async (configurationId: string, folder: string): Promise<RunSummary> =>
    JSON.parse((await e.stores.blobs.get(runFiles.summary(configurationId, folder))).body.toString('utf8'));
  const writing = async (configurationId: string) => {
    for (let i = 0; i < 200; i++) {
      if (await runningWriter(e.client, e.stores, configurationId)) return;
      await sleep(50);
    }
    throw new Error(`no writer of ${configurationId} started`);
  };

  /** `espresso sync <configurationId>` (and the admin page's "run now"). */
  const manualRun = (configurationId: string) =>
    startConfigurationRun(
      e.client,
      e.stores,
      { configurationId, runDate: DAY, mode: 'incremental' },
      'manual',
      { taskQueue: e.taskQueue },
    );

  it('two `espresso sync` a second apart: the second is refused naming the first, and no contact gets two values', async () => {
    const { configuration, list, account } = await e.connect(20_000);
    slow(account, 100);
    const first = await manualRun(configuration.id);
    await writing(configuration.id);
    await sleep(1_000);
    await assert.rejects(manualRun(configuration.id), (err: unknown) => {
      assert.ok(err instanceof RunInProgressError);
      assert.match(err.message, new RegExp(`being written by run ${first.workflowId.replace(/\//g, '\\/')}`));
      return true;
    });
    const result = await first.result();
    assert.equal(result.status, 'completed');
    assert.equal(result.updated, 20_000);
    assert.equal(list.conflicts.size, 0, 'a contact was written two different values');
  });

  it('holds off every entry point while one run writes: schedule, admin/CLI, temporal workflow start, first run, redispatch', async () => {
    const { configuration, list, account } = await e.connect(20_000);
    const id = configuration.id;
    // An earlier run for the redispatch to name (a dry run: it leaves every contact without a value).
    await (
      await start(
        { configurationId: id, runDate: '2026-11-27', mode: 'incremental', dryRun: true },
        `sync/${id}/2026-11-27/dry`,
      )
    ).result();
    slow(account, 20);
    const writer = await start(
      { configurationId: id, runDate: DAY, folderSuffix: 'manual-1', mode: 'incremental' },
      `sync/${id}/${DAY}/manual-1`,
    );
    await writing(id);
    // Started straight on Temporal, past the CLI's own check, all at once.
    const others = await Promise.all([
      start({ configurationId: id, runDate: DAY, mode: 'incremental' }, `sync/${id}/${DAY}`), // the schedule's
      start(
        { configurationId: id, runDate: DAY, folderSuffix: 'manual-2', mode: 'incremental' },
        `sync/${id}/${DAY}/manual-2`,
      ), // admin, CLI
      start({ configurationId: id, runDate: DAY, mode: 'full' }, `sync/${id}/${DAY}/full`), // the README's full resync
      start(
        { configurationId: id, runDate: DAY, folderSuffix: 'first-run-1', mode: 'full' },
        `sync/${id}/${DAY}/first-run-1`,
      ),
      start(
        {
          configurationId: id,
          runDate: DAY,
          folderSuffix: 'redispatch-1',
          mode: 'incremental',
          retryOf: '2026-11-27',
        },
        `sync/${id}/${DAY}/redispatch-1`,
      ),
    ]);
    const results = await Promise.all(others.map((h) => h.result()));
    for (const r of results) {
      assert.equal(r.status, 'busy');
      assert.match(
        r.reason!,
        new RegExp(`another run is writing this configuration: sync/${id}/${DAY}/manual-1`),
      );
      assert.equal(r.updated, 0);
    }
    assert.equal((await writer.result()).updated, 20_000);
    assert.equal(list.conflicts.size, 0);
    // The busy runs left no files (the schedule's folder is still free); the writer's are its own.
    await assert.rejects(summaryOf(id, DAY), NotFoundError);
    assert.equal((await summaryOf(id, `${DAY}_manual-1`)).status, 'completed');
  });

  it('a run of another configuration of the same ESP account waits its turn, listing on what the holder lends it: the account never sees more than its limits', async () => {
    const first = await e.connect(20_000, {}, { account: 'acct_shared' });
    const second = await e.connect(20_000, {}, { account: 'acct_shared' });
    // The account allows what one run uses (the processor paces 8 at once): two at once would be refused.
    first.account.settings.limits.concurrency = 8;
    slow(first.account, 20);
    e.sandbox.server.stats.delete('acct_shared');
    const runs = await Promise.all(
      [first, second].map((c) =>
        start(
          { configurationId: c.configuration.id, runDate: DAY, mode: 'incremental' },
          `sync/${c.configuration.id}/${DAY}`,
        ),
      ),
    );
    const results = await Promise.all(runs.map((r) => r.result()));
    assert.deepEqual(
      results.map((r) => [r.status, r.updated]),
      [
        ['completed', 20_000],
        ['completed', 20_000],
      ],
    );
    assert.equal(
      e.sandbox.server.stats.get('acct_shared')!.byStatus['429'] ?? 0,
      0,
      'both runs called the account at once',
    );
    assert.equal(first.list.conflicts.size + second.list.conflicts.size, 0);
    // The one that waited was told when the account was given back, and took it then: it did not
    // sit out a backoff timer.
    const histories = await Promise.all(runs.map((r) => r.fetchHistory()));
    const signals = histories.map((h) =>
      h.events!.flatMap((ev) => ev.workflowExecutionSignaledEventAttributes?.signalName ?? []),
    );
    const waiter = signals.findIndex((names) => names.includes('accountFreed'));
    assert.ok(waiter >= 0, `no run was told the account was free: ${JSON.stringify(signals)}`);
    assert.deepEqual(signals[1 - waiter], ['accountWanted']);
    assert.equal(histories[waiter]!.events!.filter((ev) => ev.timerFiredEventAttributes).length, 0);
    // It was lent what the holder's ending chunks held: it listed before the holder gave the
    // account back, and wrote only after.
    const at = (ev: temporal.api.history.v1.IHistoryEvent) => tsToMs(ev.eventTime!);
    const holderEnded = at(histories[1 - waiter]!.events!.at(-1)!);
    const activities = (h: (typeof histories)[number], type: string) =>
      h.events!.filter((ev) => ev.activityTaskScheduledEventAttributes?.activityType?.name === type);
    const firstPart = activities(histories[waiter]!, 'exportPart')[0]!;
    const firstChunk = activities(histories[waiter]!, 'updateChunk')[0]!;
    assert.ok(at(firstPart) < holderEnded, 'the waiting run listed only once the account was its own');
    assert.ok(at(firstChunk) > holderEnded, 'the waiting run wrote before the account was its own');
  });

  it("a run finding its account's lock expired waits while the holder's run still runs (its workers were down), and takes it from a run that has ended", async () => {
    const lockOf = (account: string) => accountLockKey('sandbox', account);
    const writeLock = (account: string, owner: object, expiresAt: number, released = false) =>
      e.stores.blobs.put(
        lockOf(account),
        JSON.stringify({ owner, expiresAt, ...(released ? { released } : {}) }),
      );
    // A holder that still runs and renews nothing: a run waiting for an account of its own (held
    // by a run that does not tell), as a run whose workers are all down would be.
    const stalled = await e.connect(10, {}, { account: 'acct_stalled' });
    const blocker = {
      configurationId: 'cfg_blocker',
      workflowId: 'sync/cfg_blocker/2026-11-28',
      runId: 'run-1',
      dryRun: false,
    };
    await writeLock('acct_stalled', blocker, Date.now() + 600_000);
    const holder = await start(
      { configurationId: stalled.configuration.id, runDate: DAY, mode: 'incremental' },
      `sync/${stalled.configuration.id}/${DAY}`,
    );
    const holderRun = { workflowId: holder.workflowId, runId: holder.firstExecutionRunId };
    const waiter = await e.connect(2_000, {}, { account: 'acct_outage' });
    const owner = {
      configurationId: stalled.configuration.id,
      ...holderRun,
      dryRun: false,
      tellsWaiters: true,
    };
    await writeLock('acct_outage', owner, Date.now() - 1_000);
    const second = await start(
      { configurationId: waiter.configuration.id, runDate: DAY, mode: 'incremental' },
      `sync/${waiter.configuration.id}/${DAY}`,
    );
    await sleep(3_000);
    assert.equal(waiter.list.writes, 0, 'it wrote beside the holder');
    const lock = JSON.parse((await e.stores.blobs.get(lockOf('acct_outage'))).body.toString('utf8'));
    assert.deepEqual(lock.owner, owner, 'it took the lock of a run that still runs');
    // The holder gives it back as it ends, and tells the run that asked for it.
    await writeLock('acct_outage', owner, Date.now(), true);
    await e.client.workflow.getHandle(second.workflowId).signal('accountFreed');
    assert.equal((await second.result()).updated, 2_000);
    await writeLock('acct_stalled', blocker, Date.now(), true);
    await holder.terminate('test over');
    // A lock left by a run that has ended (terminated before it gave it back) and expired: taken at once.
    const after = await e.connect(2_000, {}, { account: 'acct_outage' });
    const gone = { configurationId: 'cfg_gone', workflowId: 'sync/cfg_gone/2026-11-27', runId: 'run-gone' };
    await writeLock('acct_outage', { ...gone, dryRun: false, tellsWaiters: true }, Date.now() - 1_000);
    const started = Date.now();
    const third = await start(
      { configurationId: after.configuration.id, runDate: DAY, mode: 'incremental' },
      `sync/${after.configuration.id}/${DAY}`,
    );
    assert.equal((await third.result()).updated, 2_000);
    assert.ok(Date.now() - started < 30_000, `took ${Date.now() - started} ms`);
    const timers = (await third.fetchHistory()).events!.filter((ev) => ev.timerFiredEventAttributes);
    assert.equal(timers.length, 0, 'it waited for the ended run');
  });

  it('a run whose lock expired is still the writer while Temporal says it runs: refused starts, the admin page says it is stalled; not once it has ended', async () => {
    // A run that keeps running and renews nothing, as one whose workers are all down would: it
    // waits for an account of its own, held by a run that does not tell.
    const stalled = await e.connect(10, {}, { account: 'acct_held_elsewhere' });
    const other = { configurationId: 'cfg_other', workflowId: 'sync/cfg_other/x', runId: 'r', dryRun: false };
    await e.stores.blobs.put(
      accountLockKey('sandbox', 'acct_held_elsewhere'),
      JSON.stringify({ owner: other, expiresAt: Date.now() + 600_000 }),
    );
    const run = await start(
      { configurationId: stalled.configuration.id, runDate: DAY, mode: 'incremental' },
      `sync/${stalled.configuration.id}/${DAY}`,
    );
    // The configuration's account lock names that run, not renewed for longer than the TTL.
    const { configuration } = await e.connect(10, {}, { account: 'acct_expired_writer' });
    const owner = {
      configurationId: configuration.id,
      workflowId: run.workflowId,
      runId: run.firstExecutionRunId,
      dryRun: false,
      tellsWaiters: true,
    };
    await e.stores.blobs.put(
      accountLockKey('sandbox', 'acct_expired_writer'),
      JSON.stringify({ owner, expiresAt: Date.now() - 1_000 }),
    );
    try {
      assert.deepEqual(await runningWriter(e.client, e.stores, configuration.id), {
        workflowId: run.workflowId,
        stalled: true,
      });
      await assert.rejects(manualRun(configuration.id), (err: Error) => {
        assert.ok(err instanceof RunInProgressError);
        assert.match(err.message, /which no worker has run for over 10 minutes.*start the workers/);
        return true;
      });
      const app = createApp(
        webDeps(e.stores, async () => e.env.connection, {
          web: { publicUrl: 'http://localhost:3000', sessionSecret: 's'.repeat(40), admin: ADMIN },
        }),
      );
      const page = async () =>
        (await request(app).get(`/admin/configurations/${configuration.id}`).auth(ADMIN.user, ADMIN.password))
          .text;
      const shown = await page();
      assert.match(shown, new RegExp(`Running now</strong>: <a [^>]*>${run.workflowId}</a>`));
      assert.match(shown, /id="stalled">no worker has run its activities for over 10 minutes/);
      // Its progress, unless the query was not answered in time on a loaded machine.
      assert.match(shown, /id="progress">(phase \w+ · chunks 0 of 0|progress unavailable)/);
      // Ended (terminated, so it never gave the lock back): no writer, and the page shows none.
      await run.terminate('test over');
      assert.equal(await runningWriter(e.client, e.stores, configuration.id), undefined);
      assert.match(await page(), /No run in progress/);
      // A new run of that workflow id is not the run the lock names.
      const again = await start(
        { configurationId: stalled.configuration.id, runDate: DAY, mode: 'incremental' },
        run.workflowId,
      );
      assert.equal(await runningWriter(e.client, e.stores, configuration.id), undefined);
      await again.terminate('test over');
    } finally {
      await run.terminate('test over').catch(() => undefined);
    }
  });

  it('a redispatch of day D after day D+1 gave its rejected contacts values writes nothing over them', async () => {
    const { configuration, list } = await e.connect(1_000);
    list.suppressed.add(4);
    list.suppressed.add(500);
    const d = await (
      await start(
        { configurationId: configuration.id, runDate: DAY, mode: 'incremental' },
        `sync/${configuration.id}/${DAY}`,
      )
    ).result();
    assert.equal(d.rejected, 2);
    list.suppressed.clear();
    const next = await (
      await start(
        { configurationId: configuration.id, runDate: '2026-11-29', mode: 'incremental' },
        `sync/${configuration.id}/2026-11-29`,
      )
    ).result();
    assert.equal(next.updated, 2, 'day D+1 gave the two their values');
    const writes = list.writes;
    const redispatch = await (
      await start(
        {
          configurationId: configuration.id,
          runDate: '2026-11-30',
          folderSuffix: 'redispatch-1',
          mode: 'incremental',
          retryOf: DAY,
        },
        `sync/${configuration.id}/2026-11-30/redispatch-1`,
      )
    ).result();
    assert.equal(redispatch.status, 'completed');
    assert.equal(redispatch.exported, 0);
    assert.equal(list.writes, writes, 'the redispatch wrote to the ESP');
    assert.equal(list.conflicts.size, 0);
  });

  it('a full resync keeps every value a contact holds, whatever its form, in a folder of its own', async () => {
    const { configuration, list } = await e.connect(100);
    const field = configuration.fieldName;
    list.fields.set(field, { key: field, label: 'LiveConnect ID', type: 'text' });
    list.write(field, 0, 'legacy42');
    list.write(field, 1, 'an-earlier-tool-value_0123');
    const scheduled = await (
      await start(
        { configurationId: configuration.id, runDate: DAY, mode: 'incremental' },
        `sync/${configuration.id}/${DAY}`,
      )
    ).result();
    assert.equal(scheduled.updated, 98);
    const before = await summaryOf(configuration.id, DAY);
    // The README's full resync: a workflow id of its own, the same run date, no folderSuffix.
    const full = await start(
      { configurationId: configuration.id, runDate: DAY, mode: 'full' },
      `sync/${configuration.id}/${DAY}/full`,
    );
    const result = await full.result();
    assert.equal(result.exported, 0);
    assert.equal(list.values.get(field)![0], 'legacy42');
    assert.equal(list.conflicts.size, 0);
    const folders = (await e.stores.blobs.list(`runs/${configuration.id}/`))
      .filter((k) => k.endsWith('/summary.json'))
      .map((k) => k.split('/')[2]);
    const own = folders.find((f) => f !== DAY)!;
    assert.match(own, new RegExp(`^${DAY}_run-[0-9a-f]{8}$`));
    const fullSummary = await summaryOf(configuration.id, own);
    assert.equal(fullSummary.contacts.alreadySet, 100);
    assert.equal(fullSummary.foreignValues, 1, 'legacy42 is counted as a value espresso would not write');
    assert.deepEqual(
      await summaryOf(configuration.id, DAY),
      before,
      'the scheduled run’s files are untouched',
    );
  });

  it("docs/runs.md: values espresso would not write are replaced only when the operator asks (`sync --full --replace-foreign-values`): each old value stays in the run's files, and the summary counts them", async () => {
    const { configuration, list } = await e.connect(50);
    const field = configuration.fieldName;
    list.fields.set(field, { key: field, label: 'LiveConnect ID', type: 'text' });
    list.write(field, 0, 'legacy42');
    list.write(field, 1, 'an-earlier-tool-value_0123'); // espresso's own form: never replaced
    list.write(field, 2, 'L'.repeat(990)); // too long for a chunk line to keep: kept
    list.write(field, 3, 'old value 7');
    const replace = { configurationId: configuration.id, runDate: DAY, mode: 'full' as const };
    const dry = await (
      await start(
        { ...replace, folderSuffix: 'dry-run-1', dryRun: true, replaceForeignValues: true },
        `sync/${configuration.id}/${DAY}/dry-run-1`,
      )
    ).result();
    assert.deepEqual(dry.notes, [
      'would write 48 values',
      'would replace 2 values espresso would not write',
      'kept 1 value espresso would not write',
    ]);
    assert.equal(list.writes, 4, 'the dry run wrote');

    const run = await (
      await start(
        { ...replace, folderSuffix: 'manual-1', replaceForeignValues: true },
        `sync/${configuration.id}/${DAY}/manual-1`,
      )
    ).result();
    assert.equal(run.updated, 48);
    assert.deepEqual(run.notes, [
      'replaced 2 of 2 values espresso would not write',
      'kept 1 value espresso would not write',
    ]);
    const values = list.values.get(field)!;
    assert.match(values[0]!, /^[A-Za-z0-9_-]{22}$/);
    assert.equal(values[1], 'an-earlier-tool-value_0123');
    assert.equal(values[2], 'L'.repeat(990));
    const summary = await summaryOf(configuration.id, `${DAY}_manual-1`);
    assert.deepEqual(
      [
        summary.contacts.exported,
        summary.contacts.alreadySet,
        summary.foreignValues,
        summary.replacing,
        summary.replacedValues,
      ],
      [48, 2, 1, 2, 2],
    );
    const chunk = await e.chunkValues(configuration.id, `${DAY}_manual-1`);
    assert.equal(chunk.get('ct_0000001'), values[0]);
    const results = (await e.stores.blobs.get(runFiles.results(configuration.id, `${DAY}_manual-1`, 1))).body
      .toString('utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { contactId: string; value: string; previous?: string });
    assert.deepEqual(
      results.filter((r) => r.previous !== undefined).map((r) => [r.contactId, r.previous, r.value]),
      [
        ['ct_0000001', 'legacy42', values[0]],
        ['ct_0000004', 'old value 7', values[3]],
      ],
    );

    // Without the option, a full run keeps every value (none is espresso's own here: all are kept).
    list.write(field, 0, 'legacy42-again');
    const keep = await (
      await start({ ...replace, folderSuffix: 'manual-2' }, `sync/${configuration.id}/${DAY}/manual-2`)
    ).result();
    assert.equal(keep.exported, 0);
    assert.equal(list.values.get(field)![0], 'legacy42-again');
    assert.deepEqual(keep.notes, ['kept 2 values espresso would not write']);
  });

  it('refuses replaceForeignValues on anything but a full run', async () => {
    const handle = await start(
      { configurationId: 'cfg_abcdefgh12', runDate: DAY, mode: 'incremental', replaceForeignValues: true },
      'sync/cfg_abcdefgh12/replace-incremental',
    );
    await assert.rejects(handle.result(), (err: unknown) => {
      assert.match(
        ((err as WorkflowFailedError).cause as Error).message,
        /replaceForeignValues needs mode "full"/,
      );
      return true;
    });
  });

  it('a failed run leaves its status, its summary and one alert; the next completed run alerts the recovery', async () => {
    const { configuration, account } = await e.connect(50, { espListId: 'list_gone' });
    const alertsBefore = e.alerts.length;
    for (const day of ['2026-11-20', '2026-11-21']) {
      const handle = await start(
        { configurationId: configuration.id, runDate: day, mode: 'incremental' },
        `sync/${configuration.id}/${day}`,
      );
      await assert.rejects(handle.result(), WorkflowFailedError);
      assert.deepEqual((await handle.describe()).searchAttributes.EspressoStatus, ['failed']);
      const summary = await summaryOf(configuration.id, day);
      assert.equal(summary.status, 'failed');
      assert.match(summary.reason!, /list_gone does not exist/);
    }
    const failing = e.alerts.slice(alertsBefore);
    assert.deepEqual(
      failing.map((a) => a.status),
      ['run_failed'],
      'two failed runs, one alert',
    );
    const stored = await e.stores.configurations.get(configuration.id);
    assert.equal(stored.lastRun?.status, 'failed');
    assert.equal(stored.runHealth, 'failing');
    // The list is back: the next run completes and says so once.
    e.sandbox.state.seed(account.id, 'list_gone', 50);
    const ok = await (
      await start(
        { configurationId: configuration.id, runDate: '2026-11-22', mode: 'incremental' },
        `sync/${configuration.id}/2026-11-22`,
      )
    ).result();
    assert.equal(ok.status, 'completed');
    assert.deepEqual(
      e.alerts.slice(alertsBefore).map((a) => a.status),
      ['run_failed', 'run_recovered'],
    );
    assert.equal(
      (await e.stores.configurations.get(configuration.id)).alertOutbox,
      undefined,
      'nothing left to send',
    );
  });

  it('a run rejecting more than 10% of its contacts (the default threshold) alerts once; the first run back under it alerts the recovery', async () => {
    const { configuration, list } = await e.connect(20);
    for (const i of [2, 5, 11]) list.suppressed.add(i);
    const alertsBefore = e.alerts.length;
    const runDay = async (day: string) =>
      (
        await start(
          { configurationId: configuration.id, runDate: day, mode: 'incremental' },
          `sync/${configuration.id}/${day}`,
        )
      ).result();
    const first = await runDay('2026-11-23');
    assert.deepEqual([first.updated, first.rejected], [17, 3]);
    // The next day lists the three again, and the ESP still rejects them: still above, no new alert.
    const second = await runDay('2026-11-24');
    assert.deepEqual([second.updated, second.rejected], [0, 3]);
    list.suppressed.clear();
    const third = await runDay('2026-11-25');
    assert.deepEqual([third.updated, third.rejected], [3, 0]);
    assert.deepEqual(
      e.alerts.slice(alertsBefore).map((a) => [a.configurationId, a.status, a.message]),
      [
        [
          configuration.id,
          'rejections_high',
          'run 2026-11-23: 3 of 20 contacts rejected (15%), above 10%: contact_suppressed 3',
        ],
        [
          configuration.id,
          'rejections_recovered',
          'run 2026-11-25: 0 of 3 contacts rejected (0%), back under 10%',
        ],
      ],
    );
  });

  it('stops a run that passes its deadline, reports it timed_out and frees its writer', async () => {
    const { configuration, list, account } = await e.connect(30_000);
    slow(account, 100);
    const handle = await start(
      { configurationId: configuration.id, runDate: DAY, mode: 'incremental', deadlineMs: 3_000 },
      `sync/${configuration.id}/${DAY}`,
    );
    await assert.rejects(handle.result(), (err: unknown) => {
      assert.ok(err instanceof WorkflowFailedError);
      assert.equal((err.cause as { type?: string }).type, 'RunDeadline');
      return true;
    });
    const summary = await summaryOf(configuration.id, DAY);
    assert.equal(summary.status, 'timed_out');
    assert.match(summary.reason!, /passed its deadline/);
    assert.equal(
      await runningWriter(e.client, e.stores, configuration.id),
      undefined,
      'the writer is still held',
    );
    const writes = list.writes;
    await sleep(1_000);
    assert.equal(list.writes, writes, 'writes went on after the deadline');
    slow(account, 0);
    const next = await (
      await start(
        { configurationId: configuration.id, runDate: '2026-11-29', mode: 'incremental' },
        `sync/${configuration.id}/2026-11-29`,
      )
    ).result();
    assert.equal(next.status, 'completed');
    assert.equal(list.conflicts.size, 0);
  });

  it('cancelled in the Web UI: ESP writes stop within seconds and the run says cancelled', async () => {
    const { configuration, list, account } = await e.connect(60_000);
    slow(account, 30);
    const handle = await start(
      { configurationId: configuration.id, runDate: DAY, mode: 'incremental' },
      `sync/${configuration.id}/${DAY}`,
    );
    while (list.writes === 0) await sleep(50);
    await handle.cancel();
    const cancelledAt = Date.now();
    await assert.rejects(handle.result(), WorkflowFailedError);
    assert.ok(Date.now() - cancelledAt < 15_000, `the run took ${Date.now() - cancelledAt} ms to stop`);
    const writes = list.writes;
    await sleep(1_500);
    assert.equal(list.writes, writes, 'writes went on after the run stopped');
    assert.ok(writes < 60_000, 'the run was not stopped before the end');
    assert.equal((await summaryOf(configuration.id, DAY)).status, 'cancelled');
    assert.deepEqual((await handle.describe()).searchAttributes.EspressoStatus, ['cancelled']);
    assert.equal(await runningWriter(e.client, e.stores, configuration.id), undefined);
  });

  it('docs/runs.md: a terminated run keeps EspressoStatus="running" and writes no summary; ExecutionStatus="Terminated" finds it', async () => {
    const { configuration, list, account } = await e.connect(30_000);
    slow(account, 30);
    const workflowId = `sync/${configuration.id}/${DAY}`;
    const handle = await start(
      { configurationId: configuration.id, runDate: DAY, mode: 'incremental' },
      workflowId,
    );
    while (list.writes === 0) await sleep(50);
    await handle.terminate('terminated in the Web UI');
    slow(account, 0);
    const described = await handle.describe();
    assert.equal(described.status.name, 'TERMINATED');
    assert.deepEqual(described.searchAttributes.EspressoStatus, ['running']);
    await assert.rejects(summaryOf(configuration.id, DAY), NotFoundError);
    const query = `ExecutionStatus="Terminated" AND EspressoConfigurationId="${configuration.id}"`;
    const found: string[] = [];
    for (let i = 0; i < 50 && found.length === 0; i++, await sleep(100)) {
      for await (const wf of e.client.workflow.list({ query })) found.push(wf.workflowId);
    }
    assert.deepEqual(found, [workflowId]);
  });

  it('disabling a configuration stops its running run within a second or so', async () => {
    const { configuration, list, account } = await e.connect(60_000);
    slow(account, 150);
    const handle = await start(
      { configurationId: configuration.id, runDate: DAY, mode: 'incremental' },
      `sync/${configuration.id}/${DAY}`,
    );
    while (list.writes === 0) await sleep(50);
    await e.stores.configurations.update(configuration.id, () => ({ status: 'disabled' }));
    const result = await handle.result();
    assert.equal(result.status, 'cancelled');
    assert.match(result.reason!, /became disabled during the run/);
    assert.ok(result.updated < 60_000);
  });
});
