import { strict as assert } from 'node:assert';
import { WorkflowFailedError } from '@temporalio/client';
import { defaultPayloadConverter, type Payload } from '@temporalio/common';
import { Worker } from '@temporalio/worker';
import { createActivities } from '../../src/activities';
import { dataConverter } from '../../src/codec';
import { ProcessorRegistry } from '../../src/processors/registry';
import type { RunSummary } from '../../src/runs/summaries';
import { runFiles, type ResultLine } from '../../src/runs/files';
import { configurationSyncWorkflow } from '../../src/workflows';
import type { SyncProgress } from '../../src/workflows/configuration-run';
import { storeOptions } from '../../src/workflows/retry-policies';
import {
  progressQuery,
  type ConfigurationSyncInput,
  type ConfigurationSyncResult,
} from '../../src/workflows/configuration-sync';
import { startEspresso, workflowBundle, type Espresso } from '../support/espresso';
import { testPayloadKeys } from '../support/temporal';

const RUN_DATE = '2026-11-28';

async function readSummary(e: Espresso, configurationId: string, runFolder = RUN_DATE): Promise<RunSummary> {
  return JSON.parse(
    (await e.stores.blobs.get(runFiles.summary(configurationId, runFolder))).body.toString('utf8'),
  );
}

async function readResults(
  e: Espresso,
  configurationId: string,
  runFolder = RUN_DATE,
): Promise<ResultLine[]> {
  const lines: ResultLine[] = [];
  for (const key of await e.stores.blobs.list(runFiles.prefix(configurationId, runFolder))) {
    if (!/results-\d+\.jsonl$/.test(key)) continue;
    for await (const line of e.stores.blobs.readLines(key)) lines.push(JSON.parse(line));
  }
  return lines;
}

describe('configurationSyncWorkflow on a real dev server with the Sandbox ESP', function () {
  this.timeout(300_000);
  let e: Espresso;
  before(async () => {
    e = await startEspresso();
  });
  after(() => e.stop());

  /** A worker of this test's own, on a task queue of its own, with these activities. */
  const ownWorker = async (name: string, activities: object) => {
    const taskQueue = `${e.taskQueue}-${name}`;
    const worker = await Worker.create({
      connection: e.env.nativeConnection,
      namespace: 'default',
      taskQueue,
      workflowBundle: await workflowBundle(),
      dataConverter: dataConverter(testPayloadKeys),
      activities,
    });
    return { taskQueue, worker };
  };

  const run = (
    input: ConfigurationSyncInput,
    workflowId = `sync/${input.configurationId}/${input.runDate}`,
  ) =>
    e.client.workflow.start(configurationSyncWorkflow, { taskQueue: e.taskQueue, workflowId, args: [input] });

  it('updates the first chunks while the export still lists the rest; every contact gets its chunk value once', async () => {
    const { configuration, list, account } = await e.connect(45_000);
    // 10 ms a request: the 45 pages take about half a second, long enough for the progress query
    // (every 25 ms) to see chunk updates beside the listing on a loaded machine too.
    account.settings.faults.latencyMs = 10;
    const handle = await run({ configurationId: configuration.id, runDate: RUN_DATE, mode: 'full' });
    // docs/runs.md, "In the Temporal Web UI": the `progress` query while the run goes on.
    const seen: SyncProgress[] = [];
    let ended = false;
    const result = handle.result().finally(() => (ended = true));
    while (!ended) {
      seen.push(await handle.query(progressQuery));
      await new Promise((r) => setTimeout(r, 25));
    }
    assert.equal((await result).updated, 45_000);
    const documented = ['phase', 'contactsExported', 'chunksDone', 'chunksTotal', 'updated', 'rejected'];
    for (const p of seen) {
      assert.deepEqual(
        Object.keys(p)
          .filter((k) => k !== 'exporting')
          .sort(),
        [...documented].sort(),
        JSON.stringify(p),
      );
      assert.ok(['starting', 'maintenance', 'export', 'dispatch', 'summary', 'done'].includes(p.phase));
      assert.ok(p.exporting === undefined || p.exporting === true, JSON.stringify(p));
    }
    assert.ok(
      seen.some((p) => p.exporting && p.phase === 'dispatch' && p.chunksTotal < 5),
      'no answer showed the export listing beside the chunk updates',
    );
    const totals = seen.map((p) => p.chunksTotal);
    assert.deepEqual(
      totals,
      [...totals].sort((a, b) => a - b),
      'chunksTotal went down',
    );
    // In the history: the first chunk update is scheduled before the export's last part completes.
    const events = (await handle.fetchHistory()).events ?? [];
    const activityType = new Map<string, string>();
    const order: string[] = [];
    for (const ev of events) {
      const scheduled = ev.activityTaskScheduledEventAttributes;
      if (scheduled) {
        activityType.set(String(ev.eventId), scheduled.activityType!.name!);
        if (scheduled.activityType!.name === 'updateChunk') order.push('chunk scheduled');
      }
      const completed = ev.activityTaskCompletedEventAttributes;
      if (completed && activityType.get(String(completed.scheduledEventId)) === 'exportPart')
        order.push('export part completed');
    }
    const lastPart = order.lastIndexOf('export part completed');
    const firstChunk = order.indexOf('chunk scheduled');
    assert.ok(lastPart > 0 && firstChunk >= 0, order.join(', '));
    assert.ok(firstChunk < lastPart, `the chunks waited for the whole export: ${order.join(', ')}`);
    // One update per chunk file: 45 pages of 1,000 make 5 files of 10,000 lines, or more on a loaded
    // machine (a file is closed by time too: the first 250 ms into the listing, the next after 2 s).
    const summary = await readSummary(e, configuration.id);
    assert.ok(summary.chunks >= 5 && summary.chunks <= 45, `${summary.chunks} chunk files`);
    assert.equal(order.filter((o) => o === 'chunk scheduled').length, summary.chunks);

    // Every contact holds its chunk file's value, written once.
    const chunks = await e.chunkValues(configuration.id, RUN_DATE);
    assert.equal(chunks.size, 45_000);
    const values = list.values.get(configuration.fieldName)!;
    for (const [contactId, value] of chunks) assert.equal(values[Number(contactId.slice(3)) - 1], value);
    assert.equal(list.conflicts.size, 0);
    assert.deepEqual(summary.contacts, { exported: 45_000, alreadySet: 0, updated: 45_000, rejected: 0 });
    assert.equal(summary.maintenance?.field, 'created');
  });

  it("keeps every chunk slot busy: one more chunk starts when the export ends, and the last chunks get the shares of those that ended; chunks beside the export before any ends are told their shares were the export's", async () => {
    // 3 chunk updates at once at most, 40 requests a second: beside the export 2 chunks share
    // what it leaves, each far from done when it ends.
    const { configuration, list } = await e.connect(45_000);
    const { taskQueue, worker } = await ownWorker(
      'slots',
      e.pacedActivities({ rateLimit: { requests: 40, perMs: 1000 }, concurrency: 3, batchSize: 500 }),
    );
    const handle = await e.client.workflow.start(configurationSyncWorkflow, {
      taskQueue,
      workflowId: `sync/${configuration.id}/${RUN_DATE}`,
      args: [{ configurationId: configuration.id, runDate: RUN_DATE, mode: 'full' }],
    });
    const result = await worker.runUntil(handle.result());
    assert.equal(result.updated, 45_000);
    assert.equal((await e.chunkValues(configuration.id, RUN_DATE)).size, 45_000);
    assert.equal(list.conflicts.size, 0);

    // The history, in order: what was in flight at each step.
    const type = new Map<string, string>();
    const steps: Array<{ event: string; chunks: number; exporting: boolean }> = [];
    let chunks = 0;
    let exporting = 0;
    for (const ev of (await handle.fetchHistory()).events ?? []) {
      const scheduled = ev.activityTaskScheduledEventAttributes?.activityType?.name;
      if (scheduled) type.set(String(ev.eventId), scheduled);
      const ended =
        ev.activityTaskCompletedEventAttributes?.scheduledEventId ??
        ev.activityTaskFailedEventAttributes?.scheduledEventId ??
        ev.activityTaskCanceledEventAttributes?.scheduledEventId;
      const name = scheduled ?? (ended ? type.get(String(ended)) : undefined);
      if (name === 'updateChunk') chunks += scheduled ? 1 : -1;
      if (name === 'exportPart') exporting += scheduled ? 1 : -1;
      if (name)
        steps.push({
          event: `${name} ${scheduled ? 'scheduled' : 'ended'}`,
          chunks,
          exporting: exporting > 0,
        });
    }
    const trail = steps.map((st) => `${st.event} (${st.chunks})`).join(', ');
    // Never more chunks than slots: 2 beside the export, 3 after it.
    assert.ok(
      steps.every((st) => st.chunks <= (st.exporting ? 2 : 3)),
      `more chunk updates in flight than slots: ${trail}`,
    );
    // When the export ends, a third chunk starts before any of the two beside it ends.
    const exportEnd = steps.map((st) => st.event).lastIndexOf('exportPart ended');
    const next = steps.slice(exportEnd + 1).find((st) => st.event.startsWith('updateChunk'));
    assert.equal(next?.event, 'updateChunk scheduled', `the slot the export left waited: ${trail}`);
    assert.equal(next?.chunks, 3, trail);
    // That chunk, and no other, takes the export's place: it sends its first batch at once.
    const [codec] = dataConverter(testPayloadKeys).payloadCodecs ?? [];
    const inPlace: number[] = [];
    // Chunks told their share was the export's (they wait half an interval): only beside the
    // export, and only before any of the run's chunks had ended.
    const ofExport: Array<{ chunk: number; besideExport?: boolean; afterAnEnd: boolean }> = [];
    const chunkEvents = new Set<string>();
    let chunkEnded = false;
    // What the export parts are told of the chunks beside them, and what those chunks are told.
    const parts: Array<{ chunksBeside?: number; chunksAfter?: number }> = [];
    const afterWindows = new Set<number>();
    for (const ev of (await handle.fetchHistory()).events ?? []) {
      const ended = ev.activityTaskCompletedEventAttributes?.scheduledEventId;
      if (ended && chunkEvents.has(String(ended))) chunkEnded = true;
      const a = ev.activityTaskScheduledEventAttributes;
      if (a?.activityType?.name === 'exportPart') {
        const [payload] = await codec!.decode(a.input!.payloads as Payload[]);
        parts.push(defaultPayloadConverter.fromPayload(payload!));
      }
      if (a?.activityType?.name !== 'updateChunk') continue;
      chunkEvents.add(String(ev.eventId));
      const [payload] = await codec!.decode(a.input!.payloads as Payload[]);
      const given = defaultPayloadConverter.fromPayload<{
        chunk: number;
        inExportPlace?: boolean;
        besideExport?: boolean;
        shareOfExport?: boolean;
        afterExportWindow?: number;
      }>(payload!);
      if (given.besideExport) afterWindows.add(given.afterExportWindow ?? 0);
      if (given.inExportPlace) inPlace.push(given.chunk);
      if (given.shareOfExport)
        ofExport.push({ chunk: given.chunk, besideExport: given.besideExport, afterAnEnd: chunkEnded });
    }
    assert.equal(inPlace.length, 1, `chunks in the export's place: ${inPlace.join(', ')}`);
    // Each export part counts the chunks beside it with the cap they have: 2 beside it, each at
    // most 1/3 (its share once the export has ended).
    assert.deepEqual([...afterWindows], [3]);
    assert.ok(parts.length >= 1, 'no export part');
    for (const part of parts) assert.deepEqual([part.chunksBeside, part.chunksAfter], [2, 3]);
    assert.ok(ofExport.length >= 1, 'no chunk was told its share was the export');
    assert.ok(
      ofExport.every((c) => c.besideExport && !c.afterAnEnd),
      `shares of the export: ${JSON.stringify(ofExport)}`,
    );
    // Once every chunk is in flight, the run tells those still writing their larger shares.
    const lastChunk = steps.map((st) => st.event).lastIndexOf('updateChunk scheduled');
    assert.ok(
      steps.slice(lastChunk).some((st) => st.event === 'shareChunkWindows scheduled'),
      `no chunk was given a larger share as others ended: ${trail}`,
    );
    const windows = JSON.parse(
      (await e.stores.blobs.get(runFiles.chunkWindows(configuration.id, RUN_DATE))).body.toString('utf8'),
    ) as { windows: Record<string, number> };
    const given = Object.entries(windows.windows);
    assert.ok(given.length >= 1 && given.length <= 2, JSON.stringify(windows));
    // Shares that add up to at most the whole account.
    assert.ok(given.reduce((sum, [, w]) => sum + 1 / w, 0) <= 1, JSON.stringify(windows));
    assert.ok(
      given.every(([chunk]) => Number(chunk) >= 1 && Number(chunk) <= 5),
      JSON.stringify(windows),
    );
  });

  it('counts a chunk beside the export, once it has ended, as one of the chunk files made when they are fewer than may run at once; the account answers no 429', async () => {
    // 10 chunk updates at once at most, 40 requests a second, and a list of 3 or 4 chunk files.
    const { configuration, list, account } = await e.connect(25_000);
    account.settings.limits = { requestsPerSecond: 40, concurrency: 0 };
    const activities = e.pacedActivities({
      rateLimit: { requests: 40, perMs: 1000 },
      concurrency: 10,
      batchSize: 500,
    });
    const inputs: Array<Parameters<typeof activities.updateChunk>[0]> = [];
    const { taskQueue, worker } = await ownWorker('counted', {
      ...activities,
      updateChunk: (input: Parameters<typeof activities.updateChunk>[0]) => {
        inputs.push(input);
        return activities.updateChunk(input);
      },
    });
    const before = e.sandbox.server.stats.get(account.id)?.byStatus['429'] ?? 0;
    try {
      const handle = await e.client.workflow.start(configurationSyncWorkflow, {
        taskQueue,
        workflowId: `sync/${configuration.id}/${RUN_DATE}`,
        args: [{ configurationId: configuration.id, runDate: RUN_DATE, mode: 'full' }],
      });
      const result = await worker.runUntil(handle.result());
      assert.equal(result.updated, 25_000);
    } finally {
      account.settings.limits = { requestsPerSecond: 0, concurrency: 0 };
    }
    assert.equal(list.conflicts.size, 0);
    const beside = inputs.filter((i) => i.besideExport);
    assert.ok(beside.length >= 1, JSON.stringify(inputs));
    for (const input of beside) {
      assert.equal(input.afterExportWindow, 10, JSON.stringify(input));
      assert.equal(input.afterExportByChunkCount, true, JSON.stringify(input));
    }
    const answered429 = (e.sandbox.server.stats.get(account.id)?.byStatus['429'] ?? 0) - before;
    assert.equal(answered429, 0, `${answered429} requests answered 429`);
  });

  it('docs/runs.md: on an account that limits listing and writing apart, the export keeps three pages on their way and two chunks beside it share all the writing, and two after it; no 429, one value each', async () => {
    // Listing 20 pages a second (three at once at most: a fourth would be answered 429), writing
    // 40 batches a second, 8 requests in flight: 3 for the export, 2 chunks with 20 writes each
    // (five could run, with 8 each: share-sizes.ts, WRITING_CHUNKS_BESIDE).
    const { configuration, list, account } = await e.connect(30_000);
    account.settings.limits = {
      requestsPerSecond: 0,
      concurrency: 0,
      listing: { requestsPerSecond: 20, concurrency: 3 },
      writing: { requestsPerSecond: 40, concurrency: 0 },
    };
    account.settings.faults.latencyMs = 20;
    const activities = e.pacedActivities({
      rateLimit: { requests: 1000, perMs: 1000 },
      concurrency: 8,
      batchSize: 500,
      listing: { requests: 20, perMs: 1000 },
      writing: { requests: 40, perMs: 1000 },
    });
    const chunks: Array<Parameters<typeof activities.updateChunk>[0]> = [];
    const parts: Array<Parameters<typeof activities.exportPart>[0]> = [];
    const { taskQueue, worker } = await ownWorker('split', {
      ...activities,
      updateChunk: (input: Parameters<typeof activities.updateChunk>[0]) => {
        chunks.push(input);
        return activities.updateChunk(input);
      },
      exportPart: (input: Parameters<typeof activities.exportPart>[0]) => {
        parts.push(input);
        return activities.exportPart(input);
      },
    });
    const before = e.sandbox.server.stats.get(account.id)?.byStatus['429'] ?? 0;
    try {
      const handle = await e.client.workflow.start(configurationSyncWorkflow, {
        taskQueue,
        workflowId: `sync/${configuration.id}/${RUN_DATE}`,
        args: [{ configurationId: configuration.id, runDate: RUN_DATE, mode: 'full' }],
      });
      const result = await worker.runUntil(handle.result());
      assert.equal(result.updated, 30_000);
    } finally {
      account.settings.limits = { requestsPerSecond: 0, concurrency: 0 };
      account.settings.faults.latencyMs = 0;
    }
    assert.equal(list.conflicts.size, 0);
    assert.ok(parts.length >= 1 && parts.every((p) => p.exportSlots === 3), JSON.stringify(parts));
    // Each part counts the chunks beside it as they are: two, each with half of the writing.
    assert.ok(
      parts.every((p) => p.chunksBeside === 2 && p.chunksAfter === 2),
      JSON.stringify(parts),
    );
    const beside = chunks.filter((c) => c.besideExport);
    assert.ok(beside.length >= 1, JSON.stringify(chunks));
    for (const c of beside) {
      // Half of the writing each, now and once the export has ended.
      assert.equal(c.window, 2, JSON.stringify(c));
      assert.equal(c.exportSlots, 3, JSON.stringify(c));
      assert.equal(c.afterExportWindow, undefined, JSON.stringify(c));
    }
    // None takes the export's place, and no more than two write at once to the end.
    assert.ok(
      chunks.every((c) => !c.inExportPlace && (c.window ?? 0) <= 2 && (c.window ?? 0) >= 1),
      JSON.stringify(chunks),
    );
    const answered429 = (e.sandbox.server.stats.get(account.id)?.byStatus['429'] ?? 0) - before;
    assert.equal(answered429, 0, `${answered429} requests answered 429`);
  });

  it('docs/runs.md, "Retries and deadlines": every activity of a run is bounded by time, not by attempts, as the table says', async () => {
    const { configuration } = await e.connect(300);
    const handle = await run({ configurationId: configuration.id, runDate: '2026-11-27', mode: 'full' });
    assert.equal((await handle.result()).status, 'completed');
    const seconds = (d: { seconds?: unknown } | null | undefined) => Number(d?.seconds ?? 0);
    const hours = (h: number) => h * 3_600;
    const scheduled = new Map<string, { oneAttempt: number; allAttempts: number }>();
    const events = (await handle.fetchHistory()).events ?? [];
    for (const ev of events) {
      const a = ev.activityTaskScheduledEventAttributes;
      if (!a) continue;
      const type = a.activityType!.name!;
      // What the server applies: an outage is waited out, retries at most 5 minutes apart.
      assert.equal(a.retryPolicy?.maximumAttempts ?? 0, 0, `${type} has an attempt limit`);
      assert.ok(seconds(a.retryPolicy?.maximumInterval) <= 300, `${type} retries further apart`);
      scheduled.set(type, {
        oneAttempt: seconds(a.startToCloseTimeout),
        allAttempts: seconds(a.scheduleToCloseTimeout),
      });
    }
    // Taking the account and recording the summary run as local activities (a marker each, no
    // task on the server), with the store's options: what the worker applies.
    const local = events.flatMap((ev) => {
      const a = ev.markerRecordedEventAttributes;
      const data = a?.markerName === 'core_local_activity' ? a.details?.data?.payloads?.[0]?.data : undefined;
      return data
        ? [(JSON.parse(Buffer.from(data).toString('utf8')) as { activity_type: string }).activity_type]
        : [];
    });
    assert.deepEqual(local, ['startRun', 'recordRun']);
    assert.equal(scheduled.has('startRun') || scheduled.has('recordRun'), false);
    assert.deepEqual(
      {
        oneAttempt: storeOptions.startToCloseTimeout,
        allAttempts: storeOptions.scheduleToCloseTimeout,
        attempts: storeOptions.retry?.maximumAttempts,
        apart: storeOptions.retry?.maximumInterval,
      },
      { oneAttempt: '1 minute', allAttempts: '2 hours', attempts: undefined, apart: '1 minute' },
    );
    assert.deepEqual(scheduled.get('updateChunk'), { oneAttempt: hours(2), allAttempts: hours(6) });
    // The run's deadline (20 hours) and a few minutes' backstop past it.
    const exportPart = scheduled.get('exportPart')!;
    assert.equal(exportPart.oneAttempt, exportPart.allAttempts);
    assert.ok(
      exportPart.allAttempts > hours(19.9) && exportPart.allAttempts <= hours(20.25),
      String(exportPart.allAttempts),
    );
  });

  it('gives 50,000 contacts exactly the values in the chunk files', async () => {
    const { configuration, list } = await e.connect(50_000);
    const handle = await run({ configurationId: configuration.id, runDate: RUN_DATE, mode: 'incremental' });
    const result = await handle.result();
    assert.deepEqual(result, {
      configurationId: configuration.id,
      status: 'completed',
      exported: 50_000,
      updated: 50_000,
      rejected: 0,
      notes: ['created field lcee'],
    });

    const chunks = await e.chunkValues(configuration.id, RUN_DATE);
    assert.equal(chunks.size, 50_000);
    const values = list.values.get(configuration.fieldName)!;
    let mismatches = 0;
    for (const [contactId, value] of chunks) {
      if (values[Number(contactId.slice(3)) - 1] !== value) mismatches++;
    }
    assert.equal(mismatches, 0);
    assert.equal(list.conflicts.size, 0);
    assert.ok([...chunks.values()].every((v) => /^[A-Za-z0-9_-]{22}$/.test(v)));
    const keys = await e.stores.blobs.list(runFiles.prefix(configuration.id, RUN_DATE));
    assert.equal(keys.filter((k) => /contacts-\d{5}\.jsonl$/.test(k)).length, 5);
    assert.equal(keys.filter((k) => k.includes('/parts/')).length, 0, 'part files are cleaned up');

    const summary = await readSummary(e, configuration.id);
    assert.equal(summary.status, 'completed');
    assert.deepEqual(summary.contacts, { exported: 50_000, alreadySet: 0, updated: 50_000, rejected: 0 });
    assert.equal(summary.maintenance?.field, 'created');
    assert.equal(summary.chunks, 5);

    const progress = await handle.query(progressQuery);
    assert.deepEqual(progress, {
      phase: 'done',
      contactsExported: 50_000,
      chunksDone: 5,
      chunksTotal: 5,
      updated: 50_000,
      rejected: 0,
    });
    const description = await handle.describe();
    const sa = description.searchAttributes;
    assert.deepEqual(sa.EspressoConfigurationId, [configuration.id]);
    assert.deepEqual(sa.EspressoEsp, ['sandbox']);
    assert.deepEqual(sa.EspressoStatus, ['completed']);
    assert.deepEqual(sa.EspressoContactsUpdated, [50_000]);

    // Nothing about contacts travels through the history: no contact ids, no values.
    const history = JSON.stringify(await handle.fetchHistory());
    assert.ok(!history.includes('ct_00'), 'a contact id is in the history');
    assert.ok(!history.includes([...chunks.values()][0]!), 'a value is in the history');
    const events = (await handle.fetchHistory()).events!.length;
    console.log(`      history events for 50,000 contacts: configurationSync ${events}`);

    // A second incremental run finds nothing left to do, and nobody got a second value.
    const again = await (
      await run({ configurationId: configuration.id, runDate: '2026-11-29', mode: 'incremental' })
    ).result();
    assert.equal(again.exported, 0);
    const full = await (
      await run({ configurationId: configuration.id, runDate: '2026-11-30', mode: 'full' })
    ).result();
    assert.equal(full.exported, 0, 'a full run keeps existing values');
    assert.equal((await readSummary(e, configuration.id, '2026-11-30')).contacts.alreadySet, 50_000);
    assert.equal(list.conflicts.size, 0);
  });

  it('re-creates a deleted field during maintenance', async () => {
    const { configuration, list } = await e.connect(10);
    await (await run({ configurationId: configuration.id, runDate: RUN_DATE, mode: 'incremental' })).result();
    list.fields.delete(configuration.fieldName);
    list.values.delete(configuration.fieldName);
    await (
      await run({ configurationId: configuration.id, runDate: '2026-11-29', mode: 'incremental' })
    ).result();
    const summary = await readSummary(e, configuration.id, '2026-11-29');
    assert.equal(summary.maintenance?.field, 'created');
    assert.equal(summary.contacts.updated, 10);
    assert.ok(list.fields.has(configuration.fieldName));
  });

  it('moves a configuration with invalid credentials to needs_reauth, alerts once, and does not retry', async () => {
    const { configuration } = await e.connect(10);
    await e.stores.secrets.put(
      configuration.credentialsSecretId,
      JSON.stringify({ kind: 'apiKey', apiKey: 'sk_revoked_PLANTED_KEY' }),
    );
    const alertsBefore = e.alerts.length;
    const handle = await run({ configurationId: configuration.id, runDate: RUN_DATE, mode: 'incremental' });
    const result = await handle.result();
    assert.equal(result.status, 'needs_reauth');
    assert.match(result.reason!, /credentials not accepted/);
    assert.equal((await e.stores.configurations.get(configuration.id)).status, 'needs_reauth');
    assert.equal(e.alerts.length - alertsBefore, 1);
    assert.equal(e.alerts.at(-1)!.configurationId, configuration.id);
    const history = await handle.fetchHistory();
    const attempts = history
      .events!.filter((ev) => ev.activityTaskStartedEventAttributes)
      .map((ev) => ev.activityTaskStartedEventAttributes!.attempt);
    assert.ok(
      attempts.every((a) => a === 1),
      `activities were retried: ${attempts}`,
    );
    assert.ok(!JSON.stringify(history).includes('sk_revoked_PLANTED_KEY'), 'the key is in the history');

    // The next run skips it and does not alert again.
    const next = await (
      await run({ configurationId: configuration.id, runDate: '2026-11-29', mode: 'incremental' })
    ).result();
    assert.equal(next.status, 'skipped');
    assert.equal(e.alerts.length - alertsBefore, 1);
  });

  it('honours 429s with Retry-After and still updates everyone', async () => {
    const { configuration, list, account } = await e.connect(3_000);
    // The ESP allows 5 requests/s; the processor here paces for 2,000/s, so 429s are certain
    // (a random 429 fault could, rarely, answer none).
    account.settings.limits.requestsPerSecond = 5;
    e.sandbox.server.stats.clear();
    try {
      const result = await (
        await run({ configurationId: configuration.id, runDate: RUN_DATE, mode: 'incremental' })
      ).result();
      assert.equal(result.updated, 3_000);
    } finally {
      account.settings.limits.requestsPerSecond = 0;
    }
    assert.ok((e.sandbox.server.stats.get(account.id)!.byStatus['429'] ?? 0) > 0, 'no 429 was answered');
    assert.equal(list.conflicts.size, 0);
  });

  it('records per-row rejections with the ESP reason in the results file and the summary', async () => {
    const { configuration, list } = await e.connect(1_000);
    list.suppressed.add(4);
    list.suppressed.add(500);
    const result = await (
      await run({ configurationId: configuration.id, runDate: RUN_DATE, mode: 'incremental' })
    ).result();
    assert.equal(result.updated, 998);
    assert.equal(result.rejected, 2);
    const rejected = (await readResults(e, configuration.id)).filter((r) => r.status === 'rejected');
    assert.deepEqual(rejected.map((r) => r.contactId).sort(), ['ct_0000005', 'ct_0000501']);
    for (const r of rejected) assert.match((r as { reason: string }).reason, /^contact_suppressed: /);
    assert.deepEqual((await readSummary(e, configuration.id)).rejectedByKind, { contact_suppressed: 2 });

    // After the ESP lifts the suppression, a redispatch writes the same values to those two only,
    // as a run of its own: the earlier run's files stay as they were.
    list.suppressed.clear();
    const writesBefore = list.writes;
    const redispatch = await (
      await run(
        {
          configurationId: configuration.id,
          runDate: RUN_DATE,
          folderSuffix: 'redispatch-1',
          mode: 'incremental',
          retryOf: RUN_DATE,
        },
        `sync/${configuration.id}/${RUN_DATE}/redispatch`,
      )
    ).result();
    assert.equal(redispatch.updated, 2);
    assert.equal(list.writes - writesBefore, 2);
    const chunks = await e.chunkValues(configuration.id, RUN_DATE);
    assert.equal(list.values.get(configuration.fieldName)![4], chunks.get('ct_0000005'));
    assert.equal(list.conflicts.size, 0);
    assert.equal((await readResults(e, configuration.id)).filter((r) => r.status === 'rejected').length, 2);
  });

  it('docs/runs.md: a dry run writes nothing to the ESP: its maintenance only says what it would do, and no redispatch can write its export', async () => {
    const { configuration, list } = await e.connect(300);
    const handle = await run({
      configurationId: configuration.id,
      runDate: RUN_DATE,
      mode: 'incremental',
      dryRun: true,
    });
    const result = await handle.result();
    assert.equal(result.exported, 300);
    assert.equal(result.updated, 0);
    assert.equal(list.writes, 0);
    // Maintenance only says what it would do: the missing field is not created.
    assert.ok(!list.fields.has(configuration.fieldName), 'a dry run created the field');
    assert.deepEqual(result.notes, ['would create field lcee', 'would write 300 values']);
    const summary = await readSummary(e, configuration.id);
    assert.equal(summary.dryRun, true);
    assert.equal(summary.maintenance?.field, 'would_create');
    const described = await handle.describe();
    assert.deepEqual(described.searchAttributes.EspressoStatus, ['dry_run']);
    assert.match(
      (await e.stores.configurations.get(configuration.id)).lastRun!.notes!.join(),
      /would create field lcee/,
    );

    // A redispatch naming the dry run's folder (started on Temporal, past the CLI's own check).
    const redispatch = await run(
      {
        configurationId: configuration.id,
        runDate: RUN_DATE,
        folderSuffix: 'redispatch-dry',
        mode: 'incremental',
        retryOf: RUN_DATE,
      },
      `sync/${configuration.id}/${RUN_DATE}/redispatch-dry`,
    );
    await assert.rejects(redispatch.result(), (err: unknown) => {
      const root = ((err as WorkflowFailedError).cause as { cause?: { message: string; type?: string } })
        .cause!;
      assert.equal(root.type, 'InvalidInput');
      assert.match(root.message, new RegExp(`run ${RUN_DATE} of ${configuration.id} is a dry run`));
      return true;
    });
    assert.equal(list.writes, 0, "a dry run's values were written");
    assert.ok(!list.fields.has(configuration.fieldName), 'the field was created');
  });

  it('keeps a run started by hand in its own folder, never reusing or overwriting the scheduled run', async () => {
    const { configuration } = await e.connect(200);
    await (await run({ configurationId: configuration.id, runDate: RUN_DATE, mode: 'incremental' })).result();
    const scheduled = await readSummary(e, configuration.id);
    const folderSuffix = 'dry-run-080503-abcd';
    const dry = await (
      await run(
        {
          configurationId: configuration.id,
          runDate: RUN_DATE,
          folderSuffix,
          mode: 'incremental',
          dryRun: true,
        },
        `sync/${configuration.id}/${RUN_DATE}/${folderSuffix}`,
      )
    ).result();
    assert.equal(dry.exported, 0, 'listed afresh: every contact already has its value');
    assert.deepEqual(await readSummary(e, configuration.id), scheduled);
    const own = await readSummary(e, configuration.id, `${RUN_DATE}_${folderSuffix}`);
    assert.equal(own.dryRun, true);
    assert.equal(own.run, `${RUN_DATE}_${folderSuffix}`);
  });

  it('runs an input of an earlier version (the folder suffix named runId) in the same folder, across continue-as-new', async () => {
    const { configuration, list } = await e.connect(25_000);
    const suffix = 'manual-080503-k3f2';
    // As a CLI or web server of an earlier version starts it (and its continued runs carry it).
    const handle = await e.client.workflow.start('configurationSyncWorkflow', {
      taskQueue: e.taskQueue,
      workflowId: `sync/${configuration.id}/${RUN_DATE}/${suffix}`,
      args: [
        {
          configurationId: configuration.id,
          runDate: RUN_DATE,
          runId: suffix,
          mode: 'incremental',
          maxHistoryEvents: 20,
        },
      ],
    });
    const result = (await handle.result()) as ConfigurationSyncResult;
    assert.equal(result.status, 'completed');
    assert.equal(result.updated, 25_000);
    assert.notEqual(
      (await handle.describe()).runId,
      handle.firstExecutionRunId,
      'the run never continued as new',
    );
    const summary = await readSummary(e, configuration.id, `${RUN_DATE}_${suffix}`);
    assert.equal(summary.run, `${RUN_DATE}_${suffix}`);
    assert.equal((await e.chunkValues(configuration.id, `${RUN_DATE}_${suffix}`)).size, 25_000);
    assert.equal(list.writes, 25_000);
    assert.deepEqual(await e.stores.blobs.list(runFiles.prefix(configuration.id, RUN_DATE)), []);
  });

  it('completes a run whose activities workers of the earlier version run (they read the folder as runDate), as while workers are upgraded', async () => {
    const { configuration, list } = await e.connect(12_000);
    const current = createActivities({
      stores: e.stores,
      processors: new ProcessorRegistry([e.processor]),
      alerts: async () => undefined,
    });
    // The earlier version's activities: the same, but blind to the name runFolder.
    const blind = (input: unknown) => {
      if (!input || typeof input !== 'object' || !('runFolder' in input)) return input;
      const { runFolder: _, ...rest } = input;
      return rest;
    };
    const earlier = Object.fromEntries(
      Object.entries(current).map(([name, fn]) => [
        name,
        (input: unknown, ...more: unknown[]) => (fn as (...a: unknown[]) => unknown)(blind(input), ...more),
      ]),
    );
    const { taskQueue, worker } = await ownWorker('earlier', earlier);
    const result = await worker.runUntil(
      e.client.workflow.execute(configurationSyncWorkflow, {
        taskQueue,
        workflowId: `sync/${configuration.id}/${RUN_DATE}`,
        args: [{ configurationId: configuration.id, runDate: RUN_DATE, mode: 'full' }],
      }),
    );
    assert.equal(result.status, 'completed');
    assert.equal(result.updated, 12_000);
    assert.equal(list.writes, 12_000);
    assert.equal((await e.chunkValues(configuration.id, RUN_DATE)).size, 12_000);
    assert.deepEqual(await e.stores.blobs.list(runFiles.prefix(configuration.id, 'undefined')), []);
  });

  it("writes a run's chunks through a dispatch an earlier version started (its folder named runDate)", async () => {
    const { configuration, list } = await e.connect(30);
    await (await run({ configurationId: configuration.id, runDate: RUN_DATE, mode: 'full' })).result();
    const chunk = await e.chunkValues(configuration.id, RUN_DATE);
    // The ESP lost the values; the legacy run's dispatch child writes the run's chunk again.
    list.values.set(configuration.fieldName, []);
    const writes = list.writes;
    const totals = await e.client.workflow.execute('dispatchWorkflow', {
      taskQueue: e.taskQueue,
      workflowId: `sync/${configuration.id}/${RUN_DATE}/dispatch`,
      args: [
        {
          configurationId: configuration.id,
          runDate: RUN_DATE,
          chunkCount: 1,
          window: 2,
          onlyPending: false,
        },
      ],
    });
    assert.deepEqual(totals, { chunksDone: 1, updated: 30, rejected: 0, rejectedByKind: {} });
    assert.equal(list.writes - writes, 30);
    const values = list.values.get(configuration.fieldName)!;
    assert.deepEqual(new Set(values), new Set(chunk.values()));
  });

  it('fails an unknown configuration id clearly and without retrying', async () => {
    const handle = await run({
      configurationId: 'cfg_doesnotexist00',
      runDate: RUN_DATE,
      mode: 'incremental',
    });
    await assert.rejects(handle.result(), (err: unknown) => {
      assert.ok(err instanceof WorkflowFailedError);
      // The run's first step is a local activity: its failure is the run's cause, not wrapped.
      let root = err.cause as { cause?: unknown; message: string; type?: string };
      while (root.cause && root.type === undefined) root = root.cause as typeof root;
      assert.equal(root.type, 'ConfigurationNotFound');
      assert.match(root.message, /configuration cfg_doesnotexist00 does not exist/);
      return true;
    });
  });

  it('refuses malformed input with a message naming the fields', async () => {
    const handle = await run(
      { configurationId: 'nope', runDate: 'yesterday', mode: 'sometimes' as never },
      'sync/bad-input',
    );
    await assert.rejects(handle.result(), (err: unknown) => {
      const cause = (err as WorkflowFailedError).cause as Error;
      assert.match(cause.message, /configurationId must look like.*runDate must be YYYY-MM-DD.*mode must be/);
      return true;
    });
  });
});
