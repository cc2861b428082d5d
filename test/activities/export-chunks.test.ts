// When the export closes a chunk file: when it is full, or, while the run writes chunks as the
// listing goes on, once a slow listing has kept it open a while (src/activities/export-listing.ts).
// The export's clock is driven by the pages: each page asked for moves it on, so "slow" and "fast"
// are exact, whatever the machine's speed.
import { strict as assert } from 'node:assert';
import { MockActivityEnvironment } from '@temporalio/testing';
import { createActivities } from '../../src/activities';
import type { ExportPartResult } from '../../src/activities/export';
import { ProcessorRegistry } from '../../src/processors/registry';
import { SandboxProcessor } from '../../src/processors/sandbox';
import type { ContactPage } from '../../src/processors/types';
import { accountLockKey, AccountLocks, type LockOwner } from '../../src/runs/account-lock';
import { runFiles, type ExportManifest } from '../../src/runs/files';
import { startEspresso, type Espresso } from '../support/espresso';

describe('chunk files of an export, closed by size or by time', function () {
  this.timeout(60_000);
  let e: Espresso;
  before(async () => {
    e = await startEspresso();
  });
  after(() => e.stop());

  /**
   * Activities whose ESP answers each page of 1,000 contacts `pageMs` after it is asked for, one
   * page after another (no page asked for before the one before answers: export-pages.test.ts).
   */
  const pagesTaking = (pageMs: number, beforePage?: (n: number) => Promise<void>) => {
    let clock = Date.parse('2026-12-04T12:00:00Z');
    let pages = 0;
    class Timed extends SandboxProcessor {
      override async listPage(...args: Parameters<SandboxProcessor['listPage']>): Promise<ContactPage> {
        clock += pageMs;
        await beforePage?.(++pages);
        return super.listPage(...args);
      }
      override pageAfter(): undefined {
        return undefined;
      }
    }
    const processor = new Timed(
      { secrets: e.stores.secrets },
      { url: e.sandbox.url, rateLimit: { requests: 1000, perMs: 1000 }, concurrency: 4, pageSize: 1000 },
    );
    return createActivities({
      stores: e.stores,
      processors: new ProcessorRegistry([processor]),
      alerts: async () => undefined,
      clock: () => clock,
    });
  };

  /** The line count of each chunk file of the run, in order; every contact in one line only. */
  const chunkSizes = async (configurationId: string, runDate: string, chunkCount: number) => {
    const values = await e.chunkValues(configurationId, runDate); // throws on a contact in two lines
    const sizes: number[] = [];
    for (let n = 1; n <= chunkCount; n++) {
      let lines = 0;
      for await (const _ of e.stores.blobs.readLines(runFiles.contacts(configurationId, runDate, n))) lines++;
      sizes.push(lines);
    }
    assert.equal(
      sizes.reduce((a, b) => a + b, 0),
      values.size,
    );
    return sizes;
  };

  it('a slow listing (a page every 0.7 s) closes its first chunk after its first page and later ones after 2 s, in parts that resume where they ended', async () => {
    const { configuration } = await e.connect(12_500);
    const activities = pagesTaking(700);
    await new MockActivityEnvironment().run(activities.runMaintenance, configuration.id);
    const input = { configurationId: configuration.id, runDate: '2026-12-04', mode: 'full' as const };

    // A part that is to make two chunk files ends after them: chunks closed by time count.
    const first: ExportPartResult = await new MockActivityEnvironment().run(activities.exportPart, {
      ...input,
      stopAfterChunks: 2,
    });
    assert.deepEqual(first, { done: false, chunkCount: 2, contacts: 4_000 });
    // The next part, on another worker, goes on from the page after them.
    const last: ExportPartResult = await new MockActivityEnvironment().run(pagesTaking(700).exportPart, {
      ...input,
      stopAfterChunks: 100,
    });
    assert.equal(last.done, true);
    assert.equal(last.contacts, 12_500);
    // Whole pages: the first chunk one page (0.7 s >= 0.25 s), the others three (2.1 s >= 2 s).
    assert.deepEqual(
      await chunkSizes(configuration.id, input.runDate, last.chunkCount),
      [1_000, 3_000, 3_000, 3_000, 2_500],
    );

    // An export the run writes only once it has ended (a dry run's, a redispatch's) gains nothing
    // from more chunks: it closes them when full only.
    const whole: ExportManifest = await new MockActivityEnvironment().run(pagesTaking(700).exportContacts, {
      ...input,
      runDate: '2026-12-05',
    });
    assert.deepEqual(await chunkSizes(configuration.id, '2026-12-05', whole.chunkCount), [10_000, 2_500]);
  });

  it("a guest of the account's holder closes chunks when full only (none of its chunks starts before the account is its own), and by time again once it is", async () => {
    const locks = new AccountLocks(e.stores.blobs);
    const owner = (configurationId: string, runDate: string): LockOwner => ({
      configurationId,
      workflowId: `sync/${configurationId}/${runDate}`,
      runId: `run-${runDate}`,
      dryRun: false,
    });
    /** Exports as the guest of another run holding the account, which gives it back before `page`. */
    const exportAsGuest = async (runDate: string, givenBackAtPage?: number) => {
      const { configuration } = await e.connect(12_500);
      const key = accountLockKey('sandbox', configuration.espAccountId);
      const holder = owner('cfg_holder', runDate);
      const guest = owner(configuration.id, runDate);
      await locks.acquire(key, holder);
      await locks.lend(key, holder, guest.workflowId, { fraction: 1, slots: 4 });
      assert.equal((await locks.acquire(key, guest, { mayBeGuest: true })).held, false);
      const activities = pagesTaking(700, async (page) => {
        if (page !== givenBackAtPage) return;
        await locks.release(key, holder);
        // The guest looks at the lock every 25 ms: it is the holder before this page is in.
        await new Promise((r) => setTimeout(r, 200));
      });
      await new MockActivityEnvironment().run(activities.runMaintenance, configuration.id);
      const done: ExportPartResult = await new MockActivityEnvironment().run(activities.exportPart, {
        configurationId: configuration.id,
        runDate,
        mode: 'full' as const,
        lock: guest,
        stopAfterChunks: 100,
      });
      assert.equal(done.done, true);
      return chunkSizes(configuration.id, runDate, done.chunkCount);
    };
    // A guest all along: as a run that writes only once its export has ended.
    assert.deepEqual(await exportAsGuest('2026-12-06'), [10_000, 2_500]);
    // The account its own during the third page (2.1 s in): its first chunk closes after that page,
    // the next ones after 2 s each (as a holder's: the first test).
    assert.deepEqual(await exportAsGuest('2026-12-07', 3), [3_000, 3_000, 3_000, 3_000, 500]);
  });

  it('a fast listing (10,000 contacts in 0.2 s) closes chunks when full only; one of 10,000 in 1.5 s, only its first early', async () => {
    const { configuration } = await e.connect(25_000);
    const fast = pagesTaking(20);
    await new MockActivityEnvironment().run(fast.runMaintenance, configuration.id);
    const input = { configurationId: configuration.id, mode: 'full' as const, stopAfterChunks: 100 };
    const listed: ExportPartResult = await new MockActivityEnvironment().run(fast.exportPart, {
      ...input,
      runDate: '2026-12-04',
    });
    assert.equal(listed.done, true);
    assert.deepEqual(
      await chunkSizes(configuration.id, '2026-12-04', listed.chunkCount),
      [10_000, 10_000, 5_000],
    );

    // 6,667 contacts a second: 0.3 s closes the first chunk (the run's first write comes soon),
    // the later ones fill before 2 s.
    const medium: ExportPartResult = await new MockActivityEnvironment().run(pagesTaking(150).exportPart, {
      ...input,
      runDate: '2026-12-05',
    });
    assert.deepEqual(
      await chunkSizes(configuration.id, '2026-12-05', medium.chunkCount),
      [2_000, 10_000, 10_000, 3_000],
    );
  });
});
