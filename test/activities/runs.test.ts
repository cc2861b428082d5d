// Activities on their own (MockActivityEnvironment), for what is hard to provoke through a
// workflow: resuming from heartbeat details, bad chunk files, failure mapping.
import { strict as assert } from 'node:assert';
import { Writable } from 'node:stream';
import { ApplicationFailure, type Context } from '@temporalio/activity';
import { MockActivityEnvironment } from '@temporalio/testing';
import { createActivities } from '../../src/activities';
import { toActivityFailure, UNEXPECTED_ATTEMPTS } from '../../src/activities/failures';
import { createLogger } from '../../src/logger';
import { ProcessorRegistry } from '../../src/processors/registry';
import { SandboxProcessor } from '../../src/processors/sandbox';
import type { ContactPage, ContactRef } from '../../src/processors/types';
import { AccountShare } from '../../src/activities/account-share';
import { ExportFolder } from '../../src/activities/export-folder';
import type { ChunkOutcome } from '../../src/activities/update-chunk';
import type { ExportPartInput, ExportPartResult } from '../../src/activities/export';
import type { ExportManifest } from '../../src/runs/files';
import {
  InvalidCredentialsError,
  RateLimitedError,
  RequestRejectedError,
  TransientError,
} from '../../src/processors/errors';
import { accountLockKey, AccountLocks, type LockOwner } from '../../src/runs/account-lock';
import type { StartRunAnswer } from '../../src/activities/configurations';
import { rejectionKind, runFiles } from '../../src/runs/files';
import { summaryFor } from '../support/run-summaries';
import { NotFoundError, type Stores } from '../../src/storage';
import type { BaseProcessor } from '../../src/processors/base-processor';
import { mailchimpHarness, type MailchimpHarness } from '../processors/mailchimp-harness';
import { startEspresso, type Espresso } from '../support/espresso';

const DATE = '2026-11-20';

/** The activities on `stores` with `processor` as their only ESP, alerts dropped. */
const activitiesWith = (stores: Stores, processor: BaseProcessor) =>
  createActivities({ stores, processors: new ProcessorRegistry([processor]), alerts: async () => undefined });

describe('run activities', function () {
  this.timeout(60_000);
  let e: Espresso;
  let activities: ReturnType<typeof createActivities>;
  before(async () => {
    e = await startEspresso();
    activities = activitiesWith(e.stores, e.processor);
  });
  after(() => e.stop());

  const lines = (ids: string[]) =>
    ids.map((id, i) => JSON.stringify({ contactId: id, value: `value_${String(i).padStart(16, '0')}` }));

  it("a run's last step gives back the account it took, even when its configuration moved to another account meanwhile", async () => {
    const { configuration } = await e.connect(10);
    const owner: LockOwner = {
      workflowId: 'test/moved-account',
      runId: 'run-moved-1',
      configurationId: configuration.id,
      dryRun: false,
    };
    const answer = (await new MockActivityEnvironment().run(activities.startRun, {
      configurationId: configuration.id,
      folder: '2026-11-19',
      owner,
      mode: 'full' as const,
      dryRun: false,
    })) as StartRunAnswer;
    assert.equal(answer.state, 'ready');
    const { context } = answer as Extract<StartRunAnswer, { state: 'ready' }>;
    const taken = accountLockKey('sandbox', configuration.espAccountId);
    assert.equal(context.accountLock, taken);
    // The publisher connects the configuration to another account of the ESP while the run writes.
    await e.stores.configurations.update(configuration.id, () => ({ espAccountId: 'acct_moved_to' }));
    await new MockActivityEnvironment().run(
      activities.recordRun,
      summaryFor(configuration.id, '2026-11-19', '2026-11-19T06:00:00.000Z'),
      { lock: owner, lockKey: context.accountLock },
    );
    const next: LockOwner = {
      workflowId: 'test/next-run',
      runId: 'run-1',
      configurationId: 'other',
      dryRun: false,
    };
    assert.deepEqual(await new AccountLocks(e.stores.blobs).acquire(taken, next), { held: true });
  });

  /** A maintained list of 3,000 contacts and its run's chunk 1 holding all of them. */
  const chunkOf3000 = async () => {
    const { configuration, list } = await e.connect(3_000);
    await new MockActivityEnvironment().run(activities.runMaintenance, configuration.id);
    const ids = Array.from({ length: 3_000 }, (_, i) => `ct_${String(i + 1).padStart(7, '0')}`);
    await e.stores.blobs.put(runFiles.contacts(configuration.id, DATE, 1), lines(ids).join('\n') + '\n');
    return { configuration, list, ids };
  };

  /**
   * The retry of a chunkOf3000 with the details its failed attempt saved: every contact updated,
   * `sentInAll` values sent in all (`writes` says which), none written two, every line once in
   * chunk order, no part left.
   */
  /** Chunk 1's update input with the whole account (its group's batches all go out at once). */
  const aloneOnAccount = (configurationId: string) => ({
    configurationId,
    runFolder: DATE,
    chunk: 1,
    onlyPending: false,
    window: 1,
  });

  const retryChunkOf3000 = async (
    { configuration, list, ids }: Awaited<ReturnType<typeof chunkOf3000>>,
    input: { configurationId: string; runFolder: string; chunk: number; onlyPending: boolean },
    saved: unknown,
    writes: string,
    sentInAll = 3_000,
  ) => {
    const retry = new MockActivityEnvironment({ heartbeatDetails: saved });
    const outcome = await retry.run(activities.updateChunk, input);
    const { quietMs: _, ...counts } = outcome as ChunkOutcome;
    assert.deepEqual(counts, { chunk: 1, updated: 3_000, rejected: 0, rejectedByKind: {} });
    assert.equal(list.writes, sentInAll, writes);
    assert.equal(
      list.conflicts.get(configuration.fieldName)?.size ?? 0,
      0,
      'a contact was written two values',
    );
    const results = (await e.stores.blobs.get(runFiles.results(configuration.id, DATE, 1))).body
      .toString()
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { contactId: string; status: string });
    assert.deepEqual(
      results.map((r) => r.contactId),
      ids,
      'every line once, in chunk order',
    );
    assert.deepEqual(await e.stores.blobs.list(`${runFiles.prefix(configuration.id, DATE)}parts/`), []);
    return results;
  };

  it('resumes a chunk after the last saved group, keeping the saved results', async () => {
    const { configuration, list, ids } = await chunkOf3000();
    // An earlier attempt saved the first group (2,000 lines = 4 batches of 500) and then died.
    const savedPart = ids
      .slice(0, 2_000)
      .map((id, i) =>
        JSON.stringify({ contactId: id, value: `value_${String(i).padStart(16, '0')}`, status: 'updated' }),
      );
    await e.stores.blobs.put(runFiles.resultsPart(configuration.id, DATE, 1, 1), savedPart.join('\n') + '\n');
    const env = new MockActivityEnvironment({ heartbeatDetails: { linesDone: 2_000, parts: 1 } });
    const outcome = await env.run(activities.updateChunk, {
      configurationId: configuration.id,
      runFolder: DATE,
      chunk: 1,
      onlyPending: false,
    });
    // And how long before it ended its last batch started, for the chunk that takes its share.
    const { quietMs, ...counts } = outcome as ChunkOutcome;
    assert.ok(typeof quietMs === 'number' && quietMs >= 0 && quietMs < 10_000, String(quietMs));
    assert.deepEqual(counts, { chunk: 1, updated: 3_000, rejected: 0, rejectedByKind: {} });
    assert.equal(list.writes, 1_000, 'only the lines after the saved group were sent');
    const results = (await e.stores.blobs.get(runFiles.results(configuration.id, DATE, 1))).body
      .toString()
      .trim()
      .split('\n');
    assert.equal(results.length, 3_000);
    assert.deepEqual(await e.stores.blobs.list(`${runFiles.prefix(configuration.id, DATE)}parts/`), []);
  });

  it('a chunk whose last group was written but whose results file was not sends that group again with the same values', async () => {
    const chunk = await chunkOf3000();
    const { configuration, list } = chunk;
    const resultsKey = runFiles.results(configuration.id, DATE, 1);
    const { blobs } = e.stores;
    const put = blobs.put.bind(blobs);
    // The store fails the results file once: the attempt stops after its last group's writes.
    let failed = false;
    blobs.put = async (key, ...rest) => {
      if (key === resultsKey && !failed) {
        failed = true;
        throw new Error('the blob store is unavailable');
      }
      return put(key, ...rest);
    };
    const input = { configurationId: configuration.id, runFolder: DATE, chunk: 1, onlyPending: false };
    try {
      const first = new MockActivityEnvironment();
      let saved: unknown;
      first.on('heartbeat', (d: unknown) => (saved = d));
      await assert.rejects(first.run(activities.updateChunk, input));
      // Its first group (2,000 lines) is saved in a part file; the last group (1,000) only in the ESP.
      assert.deepEqual(saved, { linesDone: 2_000, parts: 1 });
      assert.equal(list.writes, 3_000);
      await retryChunkOf3000(chunk, input, saved, 'the retry sent the last group again, and only it', 4_000);
    } finally {
      blobs.put = put;
    }
  });

  /**
   * The chunk activities with a Sandbox processor whose batch `failing` (in the order sent) is
   * answered 429, after the batches `answeredFirst` were answered (sent before or beside it).
   */
  function throttledAt(failing: number, answeredFirst: number[]) {
    class Throttled extends SandboxProcessor {
      private sent = 0;
      private readonly answered = new Map<number, { done: Promise<void>; resolve: () => void }>();
      private answeredBatch(n: number) {
        let entry = this.answered.get(n);
        if (!entry) {
          let resolve!: () => void;
          const done = new Promise<void>((r) => (resolve = r));
          entry = { done, resolve };
          this.answered.set(n, entry);
        }
        return entry;
      }
      protected override async sendBatch(...args: Parameters<SandboxProcessor['sendBatch']>) {
        const n = ++this.sent;
        if (n === failing) {
          // Not forever: a batch that is never sent fails the test's assertions, not its timeout.
          await Promise.race([
            Promise.all(answeredFirst.map((m) => this.answeredBatch(m).done)),
            new Promise((r) => setTimeout(r, 10_000)),
          ]);
          throw new RateLimitedError('the ESP answered 429', 1_000);
        }
        const answer = super.sendBatch(...args);
        const answeredNow = () => this.answeredBatch(n).resolve();
        answer.then(answeredNow, answeredNow);
        return answer;
      }
    }
    return activitiesWith(
      e.stores,
      new Throttled(
        { secrets: e.stores.secrets },
        { url: e.sandbox.url, rateLimit: { requests: 2_000, perMs: 1_000 }, concurrency: 8 },
      ),
    );
  }

  it('a 429 in a group saves the batches answered before it: the retry sends only the rest', async () => {
    const chunk = await chunkOf3000();
    const { configuration, list } = chunk;
    // The first group's third batch (lines 1,001 to 1,500) is answered 429, once the two before it
    // were answered; its fourth batch, sent beside it, may be written too.
    const throttled = throttledAt(3, [1, 2]);
    const input = { configurationId: configuration.id, runFolder: DATE, chunk: 1, onlyPending: false };
    const first = new MockActivityEnvironment();
    let saved: unknown;
    first.on('heartbeat', (d: unknown) => (saved = d));
    await assert.rejects(first.run(throttled.updateChunk, input), (err: ApplicationFailure) => {
      assert.equal(err.type, 'RateLimited', err.message);
      assert.equal(err.nextRetryDelay, 1_000, 'the retry waits the ESP delay');
      return true;
    });
    const writtenBefore = list.writes;
    assert.ok([1_000, 1_500, 2_000, 2_500].includes(writtenBefore), String(writtenBefore));
    // The fourth batch, and the next group's two, when they went out before the 429 came back, are
    // kept as answered ahead.
    assert.deepEqual(
      saved,
      writtenBefore === 1_000
        ? { linesDone: 1_000, parts: 1 }
        : { linesDone: 1_000, parts: 1, ahead: writtenBefore - 1_000 },
      'the two batches answered are saved',
    );
    await retryChunkOf3000(
      chunk,
      input,
      saved,
      'the retry sent the lines not answered before, and no others',
    );
  });

  it('a 429 in a group keeps the batches answered beside it, in its group and the next: the retry sends only the lines not answered', async () => {
    const chunk = await chunkOf3000();
    const { configuration, list } = chunk;
    // The first group's four batches go out together (the chunk has the whole account), and the
    // second group's two while they are answered: the second batch (lines 501 to 1,000) is
    // answered 429 once the others were.
    const throttled = throttledAt(2, [3, 4, 5, 6]);
    const input = aloneOnAccount(configuration.id);
    const first = new MockActivityEnvironment();
    let saved: unknown;
    first.on('heartbeat', (d: unknown) => (saved = d));
    await assert.rejects(first.run(throttled.updateChunk, input), { type: 'RateLimited' });
    assert.deepEqual(
      saved,
      { linesDone: 500, parts: 1, ahead: 2_000 },
      'answered before and after are saved',
    );
    assert.equal(list.writes, 2_500);
    const results = await retryChunkOf3000(
      chunk,
      input,
      saved,
      'the retry sent lines 501 to 1,000, no others',
    );
    assert.ok(results.every((r) => r.status === 'updated'));
  });

  it('sends a group while the last answer of the group before is on its way: a slow answer leaves no gap', async () => {
    const chunk = await chunkOf3000();
    const { configuration, list } = chunk;
    // The first group's last batch (lines 1,501 to 2,000) is answered only once the next group's
    // first batch has gone out (or after 10 s, when it never does).
    let nextSent!: () => void;
    const nextGroupSent = new Promise<void>((r) => (nextSent = r));
    const order: string[] = [];
    class SlowAnswer extends SandboxProcessor {
      private sent = 0;
      protected override async sendBatch(...args: Parameters<SandboxProcessor['sendBatch']>) {
        const n = ++this.sent;
        order.push(`sent ${n}`);
        if (n === 5) nextSent();
        const answer = await super.sendBatch(...args);
        if (n === 4) await Promise.race([nextGroupSent, new Promise((r) => setTimeout(r, 10_000))]);
        order.push(`answered ${n}`);
        return answer;
      }
    }
    const slow = activitiesWith(
      e.stores,
      new SlowAnswer(
        { secrets: e.stores.secrets },
        { url: e.sandbox.url, rateLimit: { requests: 2_000, perMs: 1_000 }, concurrency: 8 },
      ),
    );
    const input = aloneOnAccount(configuration.id);
    const outcome = (await new MockActivityEnvironment().run(slow.updateChunk, input)) as ChunkOutcome;
    assert.equal(outcome.updated, 3_000);
    assert.equal(list.writes, 3_000);
    assert.ok(
      order.indexOf('sent 5') < order.indexOf('answered 4'),
      `the next group went out before the slow answer came: ${order.join(', ')}`,
    );
    const results = (await e.stores.blobs.get(runFiles.results(configuration.id, DATE, 1))).body
      .toString()
      .trim()
      .split('\n')
      .map((l) => (JSON.parse(l) as { contactId: string }).contactId);
    assert.deepEqual(results, chunk.ids, 'every line once, in chunk order');
  });

  it('rejects garbage, truncated, empty-field and oversized chunk lines per row; the rest go through', async () => {
    const { configuration, list } = await e.connect(10);
    await new MockActivityEnvironment().run(activities.runMaintenance, configuration.id);
    const good = lines(['ct_0000001', 'ct_0000002', 'ct_0000003']);
    const chunk = [
      good[0],
      'this is not json',
      '{"contactId": "ct_0000004", "value": "abc',
      JSON.stringify({ contactId: 'ct_0000005' }),
      JSON.stringify({ contactId: 'ct_0000006', value: 'x'.repeat(2_000) }),
      good[1],
      '',
      JSON.stringify({ contactId: 'ct_0000007', value: 'short' }),
      good[2],
      JSON.stringify({ contactId: '', value: 'x' }),
      JSON.stringify({ contactId: 'ct_0000008', value: 'x', previous: 5 }),
    ].join('\n');
    await e.stores.blobs.put(runFiles.contacts(configuration.id, DATE, 1), chunk + '\n');
    const outcome: ChunkOutcome = await new MockActivityEnvironment().run(activities.updateChunk, {
      configurationId: configuration.id,
      runFolder: DATE,
      chunk: 1,
      onlyPending: false,
    });
    assert.equal(outcome.updated, 3);
    assert.equal(outcome.rejected, 7);
    assert.deepEqual(outcome.rejectedByKind, { 'corrupt chunk line': 6, 'invalid value': 1 });
    const results = (await e.stores.blobs.get(runFiles.results(configuration.id, DATE, 1))).body
      .toString()
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.match(results[1].reason, /corrupt chunk line: not valid JSON/);
    assert.equal(results[1].line, 2);
    assert.match(results[3].reason, /corrupt chunk line: value: /);
    assert.equal(results[3].contactId, 'ct_0000005');
    assert.match(results[4].reason, /longer than 1000 characters/);
    assert.match(results[8].reason, /corrupt chunk line: contactId: /);
    assert.match(results[9].reason, /corrupt chunk line: previous: /);
    assert.equal(results[9].contactId, 'ct_0000008');
    assert.equal(list.writes, 3);
  });

  it('logs each chunk as one JSON line naming the configuration, run folder, ESP and workflow', async () => {
    let output = '';
    const sink = new Writable({
      write(chunk, _enc, done) {
        output += chunk.toString();
        done();
      },
    });
    const logged = createActivities({
      stores: e.stores,
      processors: new ProcessorRegistry([e.processor]),
      alerts: async () => undefined,
      log: createLogger('worker', 'info', sink),
    });
    const { configuration } = await e.connect(5);
    await new MockActivityEnvironment().run(logged.runMaintenance, configuration.id);
    const ids = ['ct_0000001', 'ct_0000002'];
    await e.stores.blobs.put(runFiles.contacts(configuration.id, DATE, 1), lines(ids).join('\n') + '\n');
    await new MockActivityEnvironment().run(logged.updateChunk, {
      configurationId: configuration.id,
      runFolder: DATE,
      chunk: 1,
      onlyPending: false,
    });
    const line = JSON.parse(output.trim().split('\n').at(-1)!);
    assert.equal(line.msg, 'chunk written to the ESP');
    assert.equal(line.configurationId, configuration.id);
    assert.equal(line.runFolder, DATE);
    assert.equal(line.esp, 'sandbox');
    assert.equal(line.workflowId, 'test');
    assert.equal(line.updated, 2);
    assert.doesNotMatch(output, /@|sandbox-demo-key/);
  });

  it('fails non-retryably, naming the key, when a chunk file is missing', async () => {
    const { configuration } = await e.connect(10);
    await assert.rejects(
      new MockActivityEnvironment().run(activities.updateChunk, {
        configurationId: configuration.id,
        runFolder: DATE,
        chunk: 7,
        onlyPending: false,
      }),
      (err: unknown) => {
        assert.ok(err instanceof ApplicationFailure);
        assert.equal(err.type, 'ChunkMissing');
        assert.equal(err.nonRetryable, true);
        assert.match(err.message, new RegExp(`runs/${configuration.id}/${DATE}/contacts-00007.jsonl`));
        return true;
      },
    );
  });

  it("docs/runs.md: no redispatch can write a dry run's export: its chunks are refused, naming the run, however they are asked for", async () => {
    const { configuration, list } = await e.connect(10);
    await new MockActivityEnvironment().run(activities.runMaintenance, configuration.id);
    const put = (folder: string, file: string, body: object) =>
      e.stores.blobs.put(`${runFiles.prefix(configuration.id, folder)}${file}`, JSON.stringify(body));
    const manifest = { chunkCount: 1, contacts: 3, alreadySet: 0, mode: 'incremental', finishedAt: DATE };
    // A dry run of this version: its folder's claim and its export say so.
    const current = `${DATE}_dry-run-080503-abcd`;
    await put(current, 'run.json', { workflowId: 'w', runId: 'r', mode: 'incremental', dryRun: true });
    await put(current, 'export.json', { ...manifest, dryRun: true });
    // A dry run of an earlier version: no claim, an unmarked export; its summary says so.
    const earlier = '2026-11-19';
    await put(earlier, 'export.json', manifest);
    await put(earlier, 'summary.json', { dryRun: true, status: 'completed' });
    for (const folder of [current, earlier]) {
      await e.stores.blobs.put(
        runFiles.contacts(configuration.id, folder, 1),
        lines(['ct_0000001', 'ct_0000002', 'ct_0000003']).join('\n') + '\n',
      );
      const refused = (err: unknown) => {
        assert.ok(err instanceof ApplicationFailure);
        assert.equal(err.type, 'InvalidInput');
        assert.equal(err.nonRetryable, true);
        assert.equal(
          err.message,
          `run ${folder} of ${configuration.id} is a dry run: its values were never meant for the ESP and are never written to it`,
        );
        return true;
      };
      // A chunk update started on the dry run's folder (a legacy dispatch, by hand)…
      await assert.rejects(
        new MockActivityEnvironment().run(activities.updateChunk, {
          configurationId: configuration.id,
          runFolder: folder,
          chunk: 1,
          onlyPending: true,
        }),
        refused,
      );
      // …and a redispatch naming it.
      await assert.rejects(
        new MockActivityEnvironment().run(activities.exportContacts, {
          configurationId: configuration.id,
          runFolder: `2026-11-30_redispatch-${folder.slice(8, 10)}`,
          mode: 'incremental' as const,
          retryOf: folder,
        }),
        refused,
      );
    }
    assert.equal(list.writes, 0, "a dry run's value was written to the ESP");
  });

  it('heartbeats while maintenance calls a slow ESP: past the heartbeat timeout, the server would start a second attempt beside it', async () => {
    // Three maintenance requests (the account, the fields, the field re-created) of 2.2 s each.
    const { configuration, list, account } = await e.connect(20);
    list.fields.delete(configuration.fieldName);
    list.values.delete(configuration.fieldName);
    account.settings.faults.latencyMs = 2_200;
    try {
      const env = new MockActivityEnvironment();
      const beats: Array<{ maintenance?: unknown }> = [];
      env.on('heartbeat', (d: { maintenance?: unknown }) => beats.push(d));
      await env.run(activities.exportContacts, {
        configurationId: configuration.id,
        runFolder: '2026-12-06_slow-maintenance',
        mode: 'full' as const,
        maintain: true,
      });
      assert.ok(
        beats.some((b) => b.maintenance === undefined),
        `no heartbeat while maintenance ran: ${JSON.stringify(beats)}`,
      );
    } finally {
      account.settings.faults.latencyMs = 0;
    }
  });

  it("a 429 another worker met pauses an activity's share within 2 s, however long it goes between its own checks", async () => {
    const { configuration } = await e.connect(10);
    const owner: LockOwner = {
      configurationId: configuration.id,
      workflowId: `sync/${configuration.id}/${DATE}`,
      runId: 'run-pauses',
      dryRun: false,
    };
    const locks = new AccountLocks(e.stores.blobs);
    const key = accountLockKey('sandbox', configuration.espAccountId);
    assert.deepEqual(await locks.acquire(key, owner), { held: true });
    const deps = {
      stores: e.stores,
      processors: new ProcessorRegistry([e.processor]),
      alerts: async () => undefined,
    };
    try {
      const waitedMs: number = await new MockActivityEnvironment().run(async (): Promise<number> => {
        const share = AccountShare.whole(deps, e.processor, configuration, owner);
        await share.check();
        const stop = share.watchPauses();
        try {
          // Another worker's chunk is answered 429 with a 3 s Retry-After.
          await new AccountLocks(e.stores.blobs).pause(key, owner, Date.now() + 3_000);
          await new Promise((r) => setTimeout(r, 2_300));
          const asked = Date.now();
          await share.pacing.run(async () => undefined);
          return Date.now() - asked;
        } finally {
          stop();
        }
      });
      assert.ok(waitedMs >= 400, `the request waited ${waitedMs} ms of the pause's last 700`);
    } finally {
      await locks.release(key, owner);
    }
  });

  it('resumes an export from the heartbeated cursor and chunk count', async () => {
    const { configuration } = await e.connect(25_000);
    await new MockActivityEnvironment().run(activities.runMaintenance, configuration.id);
    // An earlier attempt wrote chunk 1 (contacts 1-10,000) and heartbeated the cursor of page 11.
    const cursor = Buffer.from('10000').toString('base64url');
    await e.stores.blobs.put(runFiles.contacts(configuration.id, DATE, 1), 'from the earlier attempt\n');
    const env = new MockActivityEnvironment({
      heartbeatDetails: { cursor, chunkCount: 1, contacts: 10_000, alreadySet: 0 },
    });
    const manifest: ExportManifest = await env.run(activities.exportContacts, {
      configurationId: configuration.id,
      runFolder: DATE,
      mode: 'full' as const,
    });
    assert.equal(manifest.chunkCount, 3);
    assert.equal(manifest.contacts, 25_000);
    assert.equal(
      (await e.stores.blobs.get(runFiles.contacts(configuration.id, DATE, 1))).body.toString(),
      'from the earlier attempt\n',
    );
    const chunk2 = (await e.stores.blobs.get(runFiles.contacts(configuration.id, DATE, 2))).body
      .toString()
      .trim()
      .split('\n');
    assert.equal(chunk2.length, 10_000);
    assert.equal(JSON.parse(chunk2[0]!).contactId, 'ct_0010001');
    // A finished export is reused, not redone.
    const again = await new MockActivityEnvironment().run(activities.exportContacts, {
      configurationId: configuration.id,
      runFolder: DATE,
      mode: 'full' as const,
    });
    assert.deepEqual(again, manifest);
  });

  it('works in the run folder an earlier version named runDate (its activities in flight during an upgrade)', async () => {
    const { configuration, list } = await e.connect(30);
    await new MockActivityEnvironment().run(activities.runMaintenance, configuration.id);
    // As workflows of earlier versions schedule them: the folder of a run started by hand.
    const folder = `${DATE}_manual-080503-k3f2`;
    const earlier = { configurationId: configuration.id, runDate: folder };
    const manifest: ExportManifest = await new MockActivityEnvironment().run(activities.exportContacts, {
      ...earlier,
      mode: 'full' as const,
    });
    assert.equal(manifest.contacts, 30);
    const watched = await new MockActivityEnvironment().run(activities.awaitExportedChunks, {
      ...earlier,
      after: 0,
    });
    assert.deepEqual(watched, { chunkCount: 1, contacts: 30 });
    const outcome: ChunkOutcome = await new MockActivityEnvironment().run(activities.updateChunk, {
      ...earlier,
      chunk: 1,
      onlyPending: false,
    });
    assert.equal(outcome.updated, 30);
    assert.equal(list.writes, 30);
    const results = (await e.stores.blobs.get(runFiles.results(configuration.id, folder, 1))).body.toString();
    assert.equal(results.trim().split('\n').length, 30);
    assert.deepEqual(await e.stores.blobs.list(runFiles.prefix(configuration.id, 'undefined')), []);
  });

  it('refuses an activity input that names no run folder, non-retryably', async () => {
    const { configuration } = await e.connect(10);
    await assert.rejects(
      new MockActivityEnvironment().run(activities.updateChunk, {
        configurationId: configuration.id,
        chunk: 1,
        onlyPending: false,
      } as never),
      (err: unknown) => {
        assert.ok(err instanceof ApplicationFailure);
        assert.equal(err.type, 'InvalidInput');
        assert.equal(err.nonRetryable, true);
        assert.match(err.message, /names no run folder \(runFolder/);
        return true;
      },
    );
  });

  it('chunk updates that take over from one another on an account of 5 writes a second are never answered 429', async function () {
    this.timeout(30_000);
    // Batches of 10, paced for the account's 5 requests a second, as the Iterable profile's writes.
    const limited = e.pacedActivities({
      rateLimit: { requests: 5, perMs: 1000 },
      concurrency: 8,
      batchSize: 10,
    });
    const { configuration, account } = await e.connect(140);
    await new MockActivityEnvironment().run(limited.runMaintenance, configuration.id);
    account.settings.limits = { requestsPerSecond: 5, concurrency: 0 };
    const runFolder = '2026-11-26';
    const ids = Array.from({ length: 140 }, (_, i) => `ct_${String(i + 1).padStart(7, '0')}`);
    const chunks = [ids.slice(0, 60), ids.slice(60, 100), ids.slice(100)];
    for (const [i, chunk] of chunks.entries()) {
      await e.stores.blobs.put(
        runFiles.contacts(configuration.id, runFolder, i + 1),
        lines(chunk).join('\n') + '\n',
      );
    }
    const update = (chunk: number, window: number): Promise<ChunkOutcome> =>
      new MockActivityEnvironment().run(limited.updateChunk, {
        configurationId: configuration.id,
        runFolder,
        chunk,
        onlyPending: false,
        window,
      });
    const limitedBefore = e.sandbox.server.stats.get(account.id)?.byStatus['429'] ?? 0;
    // As a run gives them out: the first chunk alone has all 5 a second; once it has ended, the
    // next two share them (2 each). Their first batches follow its last ones within the second.
    const first = await update(1, 1);
    const [second, third] = await Promise.all([update(2, 2), update(3, 2)]);
    assert.deepEqual(
      [first, second, third].map((o) => o.updated),
      [60, 40, 40],
    );
    const answered429 = (e.sandbox.server.stats.get(account.id)?.byStatus['429'] ?? 0) - limitedBefore;
    assert.equal(answered429, 0, `${answered429} batch updates answered 429`);
  });

  /**
   * The export of 20,000 contacts (twenty pages of 1,000) beside chunk updates, on an account that
   * lists 5 pages a second, in parts of `stopAfterChunks` chunk files until it ends; returns its
   * parts and how many listing requests were answered 429.
   */
  const exportOnFivePagesASecond = async (runFolder: string, part: Partial<ExportPartInput>) => {
    const limited = e.pacedActivities({
      rateLimit: { requests: 1000, perMs: 1000 },
      concurrency: 8,
      listing: { requests: 5, perMs: 1000 },
    });
    const { configuration, account } = await e.connect(20_000);
    account.settings.limits = {
      requestsPerSecond: 0,
      concurrency: 0,
      listing: { requestsPerSecond: 5, concurrency: 0 },
    };
    const input = {
      configurationId: configuration.id,
      runFolder,
      mode: 'full' as const,
      besideChunks: true,
      stopAfterChunks: 1,
      ...part,
    };
    const limitedBefore = e.sandbox.server.stats.get(account.id)?.byStatus['429'] ?? 0;
    const parts: ExportPartResult[] = [];
    while (!parts.at(-1)?.done)
      parts.push(await new MockActivityEnvironment().run(limited.exportPart, input));
    return {
      parts,
      answered429: (e.sandbox.server.stats.get(account.id)?.byStatus['429'] ?? 0) - limitedBefore,
    };
  };

  it('export parts beside chunk updates that follow one another on an account of 5 pages a second are never answered 429', async function () {
    this.timeout(30_000);
    // A part per chunk file: each part's first page follows the last ones of the part before.
    const { parts, answered429 } = await exportOnFivePagesASecond('2026-11-27', { stopAfterChunks: 1 });
    assert.ok(parts.length >= 2, `${parts.length} part(s)`);
    assert.equal(answered429, 0, `${answered429} listing requests answered 429`);
  });

  it('an export beside chunk updates that gives up a share as it makes each chunk file keeps to 5 pages a second', async function () {
    this.timeout(30_000);
    // One part that makes several chunk files; chunks beside it take 1/3 each: the export gives
    // one share up as it makes each chunk file, while it has asked for the next page already.
    const { parts, answered429 } = await exportOnFivePagesASecond('2026-11-20', {
      chunksBeside: 3,
      stopAfterChunks: 100,
    });
    const part = parts[0]!;
    assert.equal(part.done, true);
    assert.ok(part.done && part.chunkCount >= 2, JSON.stringify(part));
    assert.equal(answered429, 0, `${answered429} listing requests answered 429`);
  });
});

describe('export of a list that shifts while it is listed', function () {
  this.timeout(60_000);
  let e: Espresso;
  before(async () => {
    e = await startEspresso();
  });
  after(() => e.stop());

  it('puts each contact in the chunk files once when pages repeat contacts (offset paging)', async () => {
    // Each page repeats the last 3 contacts of the page before (contacts added ahead of the offset)
    // and, from the third page on, the first 1,500 contacts (more shifted than a page).
    class ShiftingSandbox extends SandboxProcessor {
      private tail: ContactRef[] = [];
      private readonly first: ContactRef[] = [];
      private pages = 0;
      override async listPage(...args: Parameters<SandboxProcessor['listPage']>): Promise<ContactPage> {
        const page = await super.listPage(...args);
        if (this.first.length < 1_500) this.first.push(...page.contacts.slice(0, 1_500 - this.first.length));
        const repeated = ++this.pages >= 3 ? this.first : [];
        const shifted = { ...page, contacts: [...this.tail, ...repeated, ...page.contacts] };
        this.tail = page.contacts.slice(-3);
        return shifted;
      }
    }
    const shifting = new ShiftingSandbox(
      { secrets: e.stores.secrets },
      { url: e.sandbox.url, rateLimit: { requests: 1000, perMs: 1000 }, concurrency: 4 },
    );
    const activities = activitiesWith(e.stores, shifting);
    const { configuration } = await e.connect(2_500);
    await new MockActivityEnvironment().run(activities.runMaintenance, configuration.id);
    const manifest: ExportManifest = await new MockActivityEnvironment().run(activities.exportContacts, {
      configurationId: configuration.id,
      runFolder: DATE,
      mode: 'full' as const,
    });
    assert.equal(manifest.contacts, 2_500);
    const chunk = await e.chunkValues(configuration.id, DATE); // throws on an id in two lines
    assert.equal(chunk.size, 2_500);

    // Resumed after an earlier attempt's first chunk file: its contacts still count as exported.
    const earlier = ['ct_0000001', 'ct_0000002'].map((contactId) =>
      JSON.stringify({ contactId, value: `earlier_${contactId}_value` }),
    );
    const resumeDate = '2026-11-21';
    await e.stores.blobs.put(runFiles.contacts(configuration.id, resumeDate, 1), earlier.join('\n') + '\n');
    const resumed: ExportManifest = await new MockActivityEnvironment({
      heartbeatDetails: {
        cursor: Buffer.from('1000').toString('base64url'),
        chunkCount: 1,
        contacts: 2,
        alreadySet: 0,
      },
    }).run(activities.exportContacts, {
      configurationId: configuration.id,
      runFolder: resumeDate,
      mode: 'full' as const,
    });
    const values = await e.chunkValues(configuration.id, resumeDate);
    assert.equal(values.get('ct_0000001'), 'earlier_ct_0000001_value');
    assert.equal(resumed.contacts, values.size);
  });

  it('exports in parts: each part ends after its chunks, the next resumes after them on this worker or another, and no chunk changes once returned', async () => {
    // Pages repeat the 3 last contacts of the page before (offset paging while contacts are added).
    class Repeating extends SandboxProcessor {
      private tail: ContactRef[] = [];
      override async listPage(...args: Parameters<SandboxProcessor['listPage']>): Promise<ContactPage> {
        const page = await super.listPage(...args);
        const repeated = { ...page, contacts: [...this.tail, ...page.contacts] };
        this.tail = page.contacts.slice(-3);
        return repeated;
      }
    }
    const worker = () =>
      activitiesWith(
        e.stores,
        new Repeating(
          { secrets: e.stores.secrets },
          { url: e.sandbox.url, rateLimit: { requests: 1000, perMs: 1000 }, concurrency: 4 },
        ),
      );
    const { configuration } = await e.connect(35_000);
    const runFolder = '2026-11-22';
    const input = { configurationId: configuration.id, runFolder, mode: 'full' as const };
    const one = worker();
    const first: ExportPartResult = await new MockActivityEnvironment().run(one.exportPart, {
      ...input,
      stopAfterChunks: 1,
    });
    assert.equal(first.done, false);
    assert.equal(first.chunkCount, 1);
    const chunk1 = (
      await e.stores.blobs.get(runFiles.contacts(configuration.id, runFolder, 1))
    ).body.toString();
    // The same worker goes on (keeping the ids it saw), then another one (reading them again).
    const second: ExportPartResult = await new MockActivityEnvironment().run(one.exportPart, {
      ...input,
      stopAfterChunks: 1,
    });
    assert.equal(second.done, false);
    assert.equal(second.chunkCount, 2);
    // What the parts said they made is what their chunk files hold.
    assert.equal(first.contacts, chunk1.trim().split('\n').length);
    assert.equal((await e.chunkValues(configuration.id, runFolder)).size, second.contacts);
    const last: ExportPartResult = await new MockActivityEnvironment().run(worker().exportPart, {
      ...input,
      stopAfterChunks: 9,
    });
    assert.equal(last.done, true);
    assert.equal(last.contacts, 35_000);
    assert.ok(last.chunkCount >= 4);
    const values = await e.chunkValues(configuration.id, runFolder); // throws on an id in two lines
    assert.equal(values.size, 35_000);
    const again = (
      await e.stores.blobs.get(runFiles.contacts(configuration.id, runFolder, 1))
    ).body.toString();
    assert.equal(again, chunk1, 'a returned chunk file was rewritten');
  });
});

describe('export and updates of a Mailchimp audience archived and restored while it is listed', function () {
  this.timeout(120_000);
  let e: Espresso;
  let h: MailchimpHarness;
  before(async () => {
    e = await startEspresso();
    h = await mailchimpHarness();
  });
  after(async () => {
    try {
      await e.stop();
    } finally {
      await h.stop();
    }
  });

  it('gives every member one value over two runs, and adds back none of those archived', async () => {
    const target = await h.connectWithApiKey();
    const emails = await h.seed(target, 3_000);
    const list = h.fake.lists.get(target.espListId!)!;
    const configuration = await e.stores.configurations.create(
      {
        esp: target.esp,
        accountLabel: 'Mailchimp test account',
        espAccountId: target.espAccountId,
        espListId: target.espListId,
        fieldName: target.fieldName,
        apiBaseUrl: target.apiBaseUrl,
        status: 'active',
        maintenance: true,
      },
      { id: target.id },
    );
    const activities = activitiesWith(e.stores, h.processor);
    const run = async (runFolder: string) => {
      const manifest: ExportManifest = await new MockActivityEnvironment().run(activities.exportContacts, {
        configurationId: configuration.id,
        runFolder,
        mode: 'incremental' as const,
      });
      const values = await e.chunkValues(configuration.id, runFolder); // throws on an id in two lines
      const outcome = { updated: 0, rejected: 0 };
      for (let chunk = 1; chunk <= manifest.chunkCount; chunk++) {
        const o: ChunkOutcome = await new MockActivityEnvironment().run(activities.updateChunk, {
          configurationId: configuration.id,
          runFolder,
          chunk,
          onlyPending: false,
          window: 1, // the run's only chunk: all of the account
        });
        outcome.updated += o.updated;
        outcome.rejected += o.rejected;
      }
      return { values, outcome };
    };
    await new MockActivityEnvironment().run(activities.runMaintenance, configuration.id);

    // Pages of 1,000, oldest signup first. After the first page the publisher archives 100 members
    // it listed (the next page starts 100 further on: 100 members are passed over), and after the
    // second restores 50 of them (the third page starts 50 back: 50 members are listed again).
    const archived = emails.slice(100, 200);
    const restored = archived.slice(0, 50);
    h.fake.afterMembersPage = (changed, offset) => {
      if (changed !== list) return;
      if (offset === 0) for (const email of archived) h.fake.archiveMember(list, email);
      if (offset === 1_000) for (const email of restored) h.fake.restoreMember(list, email);
    };
    const first = await run(DATE);
    h.fake.afterMembersPage = undefined;
    const passedOver = emails.slice(1_000, 1_100);
    assert.deepEqual(
      [...first.values.keys()].sort(),
      emails.filter((email) => !passedOver.includes(email)).sort(),
    );
    // The archived members still archived were listed before: written, Mailchimp adds them back,
    // espresso archives them again and rejects them.
    const stillArchived = archived.slice(50);
    assert.deepEqual(first.outcome, {
      updated: 2_900 - stillArchived.length,
      rejected: stillArchived.length,
    });
    for (const email of stillArchived) assert.equal(list.byEmail.has(email), false, `${email} added back`);

    // The next run lists the members passed over, and only them.
    const second = await run('2026-11-21');
    assert.deepEqual([...second.values.keys()].sort(), [...passedOver].sort());
    assert.deepEqual(second.outcome, { updated: 100, rejected: 0 });

    // Every member of the audience holds the one value its run gave it.
    const given = new Map([...first.values, ...second.values]);
    assert.equal(list.members.length, 3_000 - stillArchived.length);
    const wrong = list.members.filter((m) => m.merge_fields[target.fieldName] !== given.get(m.email_address));
    assert.deepEqual(
      wrong.map((m) => m.email_address),
      [],
    );
  });
});

describe('activity failure mapping', () => {
  it('gives a 429 the ESP delay as the next retry delay', () => {
    const failure = toActivityFailure(new RateLimitedError('rate limited', 7_000)) as ApplicationFailure;
    assert.equal(failure.type, 'RateLimited');
    assert.equal(failure.nextRetryDelay, 7_000);
    assert.equal(failure.nonRetryable, false);
  });

  it('retries transient errors and never invalid credentials', () => {
    assert.equal((toActivityFailure(new TransientError('503')) as ApplicationFailure).nonRetryable, false);
    const invalid = toActivityFailure(new InvalidCredentialsError('401')) as ApplicationFailure;
    assert.equal(invalid.nonRetryable, true);
    assert.equal(invalid.type, 'InvalidCredentials');
    assert.equal(
      (toActivityFailure(new NotFoundError('configuration', 'cfg_x')) as ApplicationFailure).type,
      'ConfigurationNotFound',
    );
  });

  it('keeps ESP text naming an address out of every failure it makes, whatever the error', () => {
    // An export job's reason, a code: processors quote them as the ESP sent them.
    for (const err of [
      new RequestRejectedError('the SendGrid contact export failed: jane.doe@gmail is invalid'),
      new TransientError('Iterable answered josé@exämple.com'),
      new InvalidCredentialsError('key of owner%40publisher.example revoked'),
      new RateLimitedError('limited for info@bücher.de', 1_000),
    ]) {
      const failure = toActivityFailure(err) as ApplicationFailure;
      assert.doesNotMatch(failure.message, /@|%40|jane\.doe|josé|owner|bücher/, failure.message);
      assert.match(failure.message, /\[email\]/);
    }
  });

  it('counts rejections by the kind an ESP code names, and free text (a sentence naming the contact) as other', () => {
    assert.equal(rejectionKind('contact_suppressed: [email] is suppressed'), 'contact_suppressed');
    assert.equal(
      rejectionKind('Member In Compliance State: [email] is in a compliance state'),
      'Member In Compliance State',
    );
    assert.equal(rejectionKind('Subscription [contact] ([email]) could not be updated'), 'other');
    assert.equal(rejectionKind('A subscription (maría.ló[email]) could not be updated: gone'), 'other');
    assert.equal(rejectionKind(''), 'unknown');
  });
});

describe('bounded failures and alerts that survive a crash', function () {
  this.timeout(60_000);
  let e: Espresso;
  let activities: ReturnType<typeof createActivities>;
  const sent: Array<{ configurationId: string; status: string }> = [];
  before(async () => {
    e = await startEspresso();
    activities = createActivities({
      stores: e.stores,
      processors: new ProcessorRegistry([e.processor]),
      alerts: async (a) => void sent.push(a),
    });
  });
  after(() => e.stop());

  it('retries an error it does not know (a store refusing access) a few times, then fails, without emails in the message', () => {
    const denied = new Error('AccessDenied: owner@publisher.example may not write runs/');
    const early = toActivityFailure(denied, 1) as ApplicationFailure;
    assert.equal(early.type, 'Unexpected');
    assert.equal(early.nonRetryable, false);
    const late = toActivityFailure(denied, UNEXPECTED_ATTEMPTS) as ApplicationFailure;
    assert.equal(late.nonRetryable, true);
    assert.match(late.message, /AccessDenied/);
    assert.doesNotMatch(late.message, /owner@publisher\.example/);
  });

  it('sends an alert a crash left unsent (saved with the status change) once, from the daily listing', async () => {
    const { configuration } = await e.connect(5);
    // A crash between the status write and the send leaves this in the document.
    await e.stores.configurations.update(configuration.id, () => ({
      status: 'needs_reauth',
      alertOutbox: [{ id: 'a1', status: 'needs_reauth', message: 'credentials no longer work' }],
    }));
    sent.length = 0;
    const env = new MockActivityEnvironment();
    await env.run(activities.listConfigurationsPage, { limit: 1_000 });
    await env.run(activities.listConfigurationsPage, { limit: 1_000 });
    assert.deepEqual(
      sent.filter((a) => a.configurationId === configuration.id).map((a) => a.status),
      ['needs_reauth'],
    );
    assert.equal((await e.stores.configurations.get(configuration.id)).alertOutbox, undefined);
  });

  it('lists an unreadable configuration document as unreadable, alerts once, and the others as they are', async () => {
    const { configuration: good } = await e.connect(5);
    const { configuration: bad } = await e.connect(5);
    await e.stores.blobs.put(`configurations/${bad.id}.json`, '{"id": "' + bad.id + '", "esp": "sand');
    sent.length = 0;
    const env = new MockActivityEnvironment();
    type Page = Awaited<ReturnType<typeof activities.listConfigurationsPage>>;
    const first: Page = await env.run(activities.listConfigurationsPage, { limit: 1_000 });
    const second: Page = await env.run(activities.listConfigurationsPage, { limit: 1_000 });
    for (const page of [first, second]) {
      const byId = new Map(page.entries.map((x) => [x.configurationId, x]));
      assert.match(byId.get(bad.id)!.unreadable!, /not valid JSON/);
      assert.equal(byId.get(good.id)!.status, 'active');
    }
    assert.equal(sent.filter((a) => a.configurationId === bad.id).length, 1, 'alerted once');
    await e.stores.blobs.delete(`configurations/${bad.id}.json`);
  });

  it('saves an ESP export job before reading it: a retry reads the job the first attempt started', async () => {
    let jobsStarted = 0;
    let failNext = true;
    class ExportJobSandbox extends SandboxProcessor {
      override async startListing(): Promise<string> {
        jobsStarted++; // the ESP starts an export job
        return `job-${jobsStarted}`;
      }
      override async listPage(...args: Parameters<SandboxProcessor['listPage']>): Promise<ContactPage> {
        const [, cursor] = args;
        if (cursor !== 'job-1') throw new Error(`listed ${String(cursor)}, not the job started first`);
        if (failNext) {
          failNext = false;
          throw new TransientError('the worker died while the job ran');
        }
        return { contacts: [{ contactId: 'ct_0000001' }, { contactId: 'ct_0000002' }] };
      }
    }
    const jobs = new ExportJobSandbox(
      { secrets: e.stores.secrets },
      { url: e.sandbox.url, rateLimit: { requests: 1000, perMs: 1000 }, concurrency: 4 },
    );
    const withJobs = activitiesWith(e.stores, jobs);
    const { configuration } = await e.connect(1);
    const input = { configurationId: configuration.id, runFolder: '2026-11-22', mode: 'full' as const };
    await assert.rejects(new MockActivityEnvironment().run(withJobs.exportContacts, input));
    // The retry has no heartbeat details: the worker died before its heartbeat was sent.
    const manifest: ExportManifest = await new MockActivityEnvironment().run(withJobs.exportContacts, input);
    assert.equal(manifest.contacts, 2);
    assert.equal(jobsStarted, 1, 'the retry started a second export job');
  });

  it('an export beside chunk updates that lists slower than its share gives the rest to the chunks, which take it', async function () {
    this.timeout(60_000);
    // 50 requests a second, 10 at once: beside the chunks the export keeps 41 a second.
    const slow = e.pacedActivities({ rateLimit: { requests: 50, perMs: 1000 }, concurrency: 10 });
    // A page at a time, each answered after 200 ms: about 5 pages a second.
    const { configuration, account } = await e.connect(30_000);
    account.settings.faults.latencyMs = 200;
    const runFolder = '2026-11-24';
    try {
      const input = {
        configurationId: configuration.id,
        runFolder,
        mode: 'full' as const,
        besideChunks: true,
      };
      await new MockActivityEnvironment().run(slow.exportPart, { ...input, stopAfterChunks: 10 });
    } finally {
      account.settings.faults.latencyMs = 0;
    }
    const progress = JSON.parse(
      (await e.stores.blobs.get(runFiles.exportProgress(configuration.id, runFolder))).body.toString(),
    ) as { ended?: boolean; exportKeeps?: number };
    assert.equal(progress.ended, true);
    assert.ok(
      progress.exportKeeps !== undefined && progress.exportKeeps <= 8,
      `the export keeps ${progress.exportKeeps} requests a second of the 41 it began with`,
    );
  });

  it("an export beside chunk updates says its last pages are on their way, then gives back all but its slots' share as soon as its last page is in, with the chunk files it makes in all, before its last chunk file", async function () {
    this.timeout(60_000);
    // 50 requests a second, 10 at once; three pages on the export's way and seven chunks beside it.
    const writes: Array<{ key: string; body: string }> = [];
    const blobs = new Proxy(e.stores.blobs, {
      get(target, name, receiver) {
        if (name !== 'put') return Reflect.get(target, name, receiver) as unknown;
        return (key: string, body: Buffer | string, ...rest: unknown[]) => {
          writes.push({ key, body: body.toString() });
          return (target.put as (...a: unknown[]) => unknown).call(target, key, body, ...rest);
        };
      },
    });
    const recorded = createActivities({
      stores: { ...e.stores, blobs },
      processors: new ProcessorRegistry([
        new SandboxProcessor(
          { secrets: e.stores.secrets },
          { url: e.sandbox.url, rateLimit: { requests: 50, perMs: 1000 }, concurrency: 10 },
        ),
      ]),
      alerts: async () => undefined,
    });
    const { configuration } = await e.connect(2_500);
    const runFolder = '2026-11-16';
    const result: ExportPartResult = await new MockActivityEnvironment().run(recorded.exportPart, {
      configurationId: configuration.id,
      runFolder,
      mode: 'full' as const,
      besideChunks: true,
      chunksBeside: 7,
      exportSlots: 3,
      stopAfterChunks: 100,
    });
    assert.equal(result.done, true);
    const progressKey = runFiles.exportProgress(configuration.id, runFolder);
    const progress = writes.map((w) =>
      w.key === progressKey
        ? (JSON.parse(w.body) as { exportKeeps?: number; lastChunkCount?: number; endsSoon?: boolean })
        : undefined,
    );
    const keeps = progress.map((p) => p?.exportKeeps);
    const givenBack = keeps.findIndex((k) => k === 15);
    const lastChunk = Math.max(...writes.map((w, i) => (/contacts-\d+\.jsonl$/.test(w.key) ? i : -1)));
    const manifest = writes.findIndex((w) => w.key === runFiles.exportManifest(configuration.id, runFolder));
    // Three slots of ten: 15 of the 50 requests a second; each chunk beside it then has 5.
    assert.ok(
      givenBack >= 0,
      `the export's progress said it keeps ${keeps.filter((k) => k !== undefined).join(', ')}`,
    );
    assert.ok(givenBack < lastChunk && lastChunk < manifest, 'given back after the last chunk file');
    assert.ok(
      keeps.slice(givenBack).every((k) => k === undefined || k <= 15),
      `the export took back more: ${keeps.slice(givenBack).join(', ')}`,
    );
    // Three pages of 1,000 by offset, with the list's size: after the second, the last one is
    // on its way; the give-back counts the chunk files it makes in all (one, not yet written).
    const soon = progress.findIndex((p) => p?.endsSoon === true);
    assert.ok(soon >= 0 && soon < givenBack, `said its last pages were coming at write ${soon}`);
    assert.equal(progress[givenBack]?.lastChunkCount, result.done ? result.chunkCount : undefined);
    // The run counts a share the export leaves from its last request, not from its end.
    const quietMs = result.done ? result.quietMs : undefined;
    assert.ok(
      quietMs !== undefined && quietMs >= 0,
      `the export said its last request was ${quietMs} ms before`,
    );
  });

  it('a retried export keeps no more than its progress file or its last heartbeat says it keeps, the less of the two, and says no more chunk files in all', async () => {
    const folder = new ExportFolder(e.stores.blobs, 'cfg_resume_keeps', '2026-11-15');
    // The give-back at the last page went into the progress file; the last heartbeat was sent before it.
    const saved = { chunkCount: 3, contacts: 30, alreadySet: 0, cursor: 'p4' };
    await folder.saveProgress({ ...saved, exportKeeps: 15, lastChunkCount: 4 });
    const beat = {
      chunkCount: 3,
      contacts: 30,
      alreadySet: 0,
      cursor: 'p5',
      exportKeeps: 41,
      lastChunkCount: 5,
    };
    const resumed = await folder.resumeFrom({ info: { heartbeatDetails: beat } } as unknown as Context);
    assert.equal(resumed?.cursor, 'p5', 'resumes from the heartbeat, further along');
    assert.equal(resumed?.exportKeeps, 15);
    assert.equal(resumed?.lastChunkCount, 4);
  });

  /**
   * One chunk of `contacts` written on an account of 10 requests a second, 2 at once (4 with
   * `windows`), batches of 10: beside the export the chunk has 2 requests a second (the export
   * keeps 8), and one of 4 chunks (followWindows) 2 as well. After 2.5 s the export's progress file says
   * `then` (or the run's chunk windows file, with `windows`); returns the contacts the Sandbox
   * received in the second before that and in a second soon after.
   */
  const besideTheExport = async (
    contacts: number,
    runFolder: string,
    then: Record<string, unknown>,
    windows?: { window: number; then: Record<string, number> },
    /** One of 3 beside the export, 1/4 once it has ended (4 at once): 1 request a second beside it. */
    fullWindow?: { afterExportByChunkCount?: boolean },
  ) => {
    // A window of 4 needs 4 at once for 1/4 of them to be one.
    const concurrency = windows || fullWindow ? 4 : 2;
    const slow = e.pacedActivities({ rateLimit: { requests: 10, perMs: 1000 }, concurrency, batchSize: 10 });
    const { configuration, list } = await e.connect(contacts);
    await new MockActivityEnvironment().run(slow.runMaintenance, configuration.id);
    const ids = Array.from({ length: contacts }, (_, i) => `ct_${String(i + 1).padStart(7, '0')}`);
    const chunkLines = ids.map((id) => JSON.stringify({ contactId: id, value: `value_${id}_000000` }));
    await e.stores.blobs.put(runFiles.contacts(configuration.id, runFolder, 1), chunkLines.join('\n') + '\n');
    const progressKey = runFiles.exportProgress(configuration.id, runFolder);
    const progress = { chunkCount: 1, contacts, alreadySet: 0 };
    await e.stores.blobs.put(progressKey, JSON.stringify(progress));
    const written: Array<{ at: number; contacts: number }> = [];
    const sample = setInterval(() => written.push({ at: Date.now(), contacts: list.writes }), 50);
    const inWindow = (from: number, to: number) => {
      const at = (t: number) => written.find((w) => w.at >= t)?.contacts ?? list.writes;
      return at(to) - at(from);
    };
    try {
      const chunk = new MockActivityEnvironment().run(slow.updateChunk, {
        configurationId: configuration.id,
        runFolder,
        chunk: 1,
        onlyPending: false,
        ...(windows
          ? { window: windows.window, followWindows: true }
          : fullWindow
            ? { window: 3, besideExport: true, afterExportWindow: 4, ...fullWindow }
            : { window: 1, besideExport: true }),
      });
      await new Promise((r) => setTimeout(r, 2_500));
      const changedAt = Date.now();
      if (windows) {
        const key = runFiles.chunkWindows(configuration.id, runFolder);
        await e.stores.blobs.put(key, JSON.stringify({ windows: windows.then }));
      } else await e.stores.blobs.put(progressKey, JSON.stringify({ ...progress, ...then }));
      const outcome = (await chunk) as ChunkOutcome;
      assert.equal(outcome.updated, contacts);
      // The chunk reads the file every 200 ms, even while it waits for its next request.
      return {
        before: inWindow(changedAt - 1_500, changedAt - 500),
        after: inWindow(changedAt + 2_000, changedAt + 3_000),
      };
    } finally {
      clearInterval(sample);
    }
  };

  /**
   * One batch of 10 contacts in each of the run's chunk files `chunks`, on an account of `rps`
   * requests a second, 4 at once, whose export's progress file says `progress`. Returns how long
   * one chunk update takes from its start to its end, given the rest of its input.
   */
  const oneBatchChunks = async (
    rps: number,
    runFolder: string,
    chunks: number[],
    progress: Record<string, unknown>,
  ) => {
    const slow = e.pacedActivities({
      rateLimit: { requests: rps, perMs: 1000 },
      concurrency: 4,
      batchSize: 10,
    });
    const { configuration } = await e.connect(10);
    await new MockActivityEnvironment().run(slow.runMaintenance, configuration.id);
    const ids = Array.from({ length: 10 }, (_, i) => `ct_${String(i + 1).padStart(7, '0')}`);
    for (const chunk of chunks) {
      const chunkLines = ids.map((id) =>
        JSON.stringify({ contactId: id, value: `value_${id}_00000${chunk}` }),
      );
      await e.stores.blobs.put(
        runFiles.contacts(configuration.id, runFolder, chunk),
        chunkLines.join('\n') + '\n',
      );
    }
    await e.stores.blobs.put(runFiles.exportProgress(configuration.id, runFolder), JSON.stringify(progress));
    return async (chunk: number, input: Record<string, unknown>) => {
      const started = Date.now();
      const outcome = (await new MockActivityEnvironment().run(slow.updateChunk, {
        configurationId: configuration.id,
        runFolder,
        chunk,
        onlyPending: false,
        ...input,
      })) as ChunkOutcome;
      assert.equal(outcome.updated, 10);
      return Date.now() - started;
    };
  };

  it("the run's first chunk beside the export sends its first batch at once; the next ones half of one of their intervals later; a chunk taking over a share, one", async function () {
    this.timeout(30_000);
    // 10 requests a second, 4 at once: three chunks beside the export, 1 request a second each.
    const timed = await oneBatchChunks(10, '2026-11-19', [1, 2, 4], {
      chunkCount: 4,
      contacts: 40,
      alreadySet: 0,
    });
    const beside = { window: 3, besideExport: true, afterExportWindow: 4 };
    const first = await timed(1, { ...beside, shareOfExport: true });
    assert.ok(first < 500, `the first chunk beside the export took ${first} ms for its one batch`);
    // Chunk 2's file may be made within the second the export used its share at the old pace.
    const second = await timed(2, { ...beside, shareOfExport: true });
    assert.ok(second >= 500 && second < 1_000, `chunk 2 sent its batch ${second} ms after it started`);
    // Chunk 4 beside an export that lets 3 run beside it holds the share one that ended held.
    const later = await timed(4, beside);
    assert.ok(later >= 1_000, `chunk 4 sent its batch ${later} ms after it started`);
  });

  it("the chunk that takes the export's place as it ends sends its first batch at once; one taking over from an ended chunk waits one of its intervals", async function () {
    this.timeout(30_000);
    // 4 requests a second, 4 at once: once the export has ended, each of 4 chunks has about 1 a second.
    const timed = await oneBatchChunks(4, '2026-11-15', [5, 6], {
      chunkCount: 6,
      contacts: 60,
      alreadySet: 0,
      ended: true,
    });
    const inPlace = await timed(5, { window: 4, followWindows: true, inExportPlace: true });
    assert.ok(inPlace < 700, `the chunk in the export's place took ${inPlace} ms for its one batch`);
    const takingOver = await timed(6, { window: 4, followWindows: true });
    assert.ok(takingOver >= 1_000, `a chunk taking over sent its batch ${takingOver} ms after it started`);
  });

  it('a chunk written beside the export takes what the export gives back', async function () {
    this.timeout(30_000);
    // Once the export keeps 1 request a second, the chunk has 9.
    const { before, after } = await besideTheExport(400, '2026-11-25', { exportKeeps: 1 });
    assert.ok(before <= 30, `${before} contacts written in a second before the export gave back`);
    // 9 batches a second at most now; 5 is more than the 2 it had, even on a loaded machine.
    assert.ok(after >= 50, `${after} contacts written in a second after the export gave back`);
  });

  it('a chunk written beside the export takes its share of the whole account once the export has ended', async function () {
    this.timeout(30_000);
    const { before, after } = await besideTheExport(600, '2026-11-23', { ended: true });
    assert.ok(before <= 30, `${before} contacts written in the second before the export ended`);
    // 10 batches a second at most now; 5 is more than the 2 it had, even on a loaded machine.
    assert.ok(after >= 50, `${after} contacts written in a second after the export ended`);
  });

  it('a chunk beside the export of a run that made fewer chunk files than may run at once takes 1/(chunk files) once it has ended; without the flag, 1/4', async function () {
    this.timeout(60_000);
    // The export made one chunk file: it is the only chunk, and takes the whole account (10 a second).
    const counted = await besideTheExport(450, '2026-11-18', { ended: true }, undefined, {
      afterExportByChunkCount: true,
    });
    assert.ok(
      counted.before <= 30,
      `${counted.before} contacts written in the second before the export ended`,
    );
    assert.ok(counted.after >= 50, `${counted.after} contacts written in a second after the export ended`);
    // A run of an earlier version counts it as one of 4 (2 requests a second).
    const uncounted = await besideTheExport(150, '2026-11-17', { ended: true }, undefined, {});
    assert.ok(uncounted.after <= 30, `${uncounted.after} contacts written in a second: more than 1/4`);
  });

  it("a chunk beside the export of a run that makes fewer chunk files than may run at once takes that share as soon as the export's last page is in, before it has ended", async function () {
    this.timeout(30_000);
    // The last page is in, the export keeps 1 request a second and makes one chunk file in all:
    // this one, which takes the other 9 (1 a second before).
    const { before, after } = await besideTheExport(
      300,
      '2026-11-14',
      { exportKeeps: 1, lastChunkCount: 1 },
      undefined,
      { afterExportByChunkCount: true },
    );
    assert.ok(before <= 30, `${before} contacts written in the second before the last page`);
    assert.ok(after >= 50, `${after} contacts written in a second after the last page`);
  });

  it("a chunk given a larger share in its run's chunk windows file (others have ended) takes it", async function () {
    this.timeout(30_000);
    // One of 4 chunks: 2 requests a second; then the only one left: 10.
    const { before, after } = await besideTheExport(600, '2026-11-22', {}, { window: 4, then: { '1': 1 } });
    assert.ok(before <= 30, `${before} contacts written in the second before its share grew`);
    assert.ok(after >= 50, `${after} contacts written in a second after its share grew`);
  });

  it("a chunk keeps its share when the run's chunk windows file names other chunks, or does not parse", async function () {
    this.timeout(30_000);
    const { after } = await besideTheExport(300, '2026-11-21', {}, { window: 4, then: { '2': 1, '3': 1 } });
    assert.ok(after <= 30, `${after} contacts written in a second: it took a share given to others`);
  });

  it("a worker process's chunks beside one export read its progress file once per 100 ms between them, every 20 ms once its last pages are on their way, and each takes the export's end", async function () {
    this.timeout(30_000);
    const runFolder = '2026-11-20';
    const reads = new Map<string, number>();
    const blobs: Stores['blobs'] = Object.assign(Object.create(e.stores.blobs) as Stores['blobs'], {
      get: (key: string) => {
        reads.set(key, (reads.get(key) ?? 0) + 1);
        return e.stores.blobs.get(key);
      },
    });
    const counted = createActivities({
      stores: { ...e.stores, blobs },
      processors: new ProcessorRegistry([
        new SandboxProcessor(
          { secrets: e.stores.secrets },
          { url: e.sandbox.url, rateLimit: { requests: 10, perMs: 1000 }, concurrency: 4, batchSize: 10 },
        ),
      ]),
      alerts: async () => undefined,
    });
    const { configuration, list } = await e.connect(300);
    await new MockActivityEnvironment().run(counted.runMaintenance, configuration.id);
    const progressKey = runFiles.exportProgress(configuration.id, runFolder);
    for (const chunk of [1, 2, 3]) {
      const lines = Array.from({ length: 100 }, (_, i) => {
        const id = `ct_${String((chunk - 1) * 100 + i + 1).padStart(7, '0')}`;
        return JSON.stringify({ contactId: id, value: `value_${id}_000000` });
      });
      await e.stores.blobs.put(
        runFiles.contacts(configuration.id, runFolder, chunk),
        lines.join('\n') + '\n',
      );
    }
    await e.stores.blobs.put(progressKey, JSON.stringify({ chunkCount: 3, contacts: 300, alreadySet: 0 }));
    // Three chunks beside the export, one request a second each, 1/4 of the account once it has ended.
    const chunks = [1, 2, 3].map((chunk) =>
      new MockActivityEnvironment().run(counted.updateChunk, {
        configurationId: configuration.id,
        runFolder,
        chunk,
        onlyPending: false,
        window: 3,
        besideExport: true,
        afterExportWindow: 4,
      }),
    );
    await new Promise((r) => setTimeout(r, 2_000));
    const readsBeside = reads.get(progressKey) ?? 0;
    // About 20 reads in those 2 seconds between the three chunks, where each reading alone made 60.
    assert.ok(readsBeside <= 25, `${readsBeside} reads of the progress file in 2 s by three chunks`);
    // The export's last pages are on their way: every 20 ms now, about 25 reads in half a second.
    await e.stores.blobs.put(
      progressKey,
      JSON.stringify({ chunkCount: 3, contacts: 300, alreadySet: 0, endsSoon: true }),
    );
    await new Promise((r) => setTimeout(r, 150)); // read, on the next look
    const soonFrom = reads.get(progressKey) ?? 0;
    await new Promise((r) => setTimeout(r, 500));
    const readsSoon = (reads.get(progressKey) ?? 0) - soonFrom;
    assert.ok(readsSoon >= 12, `${readsSoon} reads in half a second once the last pages were on their way`);
    const writtenBeside = list.writes;
    await e.stores.blobs.put(
      progressKey,
      JSON.stringify({ chunkCount: 3, contacts: 300, alreadySet: 0, ended: true }),
    );
    const endedAt = Date.now();
    const outcomes = (await Promise.all(chunks)) as ChunkOutcome[];
    assert.deepEqual(
      outcomes.map((o) => o.updated),
      [100, 100, 100],
    );
    // Beside the export they wrote 3 batches a second; once it ended, 7.5 (1/4 of 10 each): the
    // 300 - writtenBeside contacts left take about (300 - writtenBeside) / 75 s, not / 30.
    const seconds = (Date.now() - endedAt) / 1000;
    const left = (300 - writtenBeside) / 10;
    assert.ok(seconds < (left / 3) * 0.8, `${left} batches left took ${seconds} s after the export ended`);
  });
});
