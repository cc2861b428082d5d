// Pages by offset: the export asks for the next page while the one before is still on its way
// (src/activities/export-listing.ts), and a contact never gets two lines, whatever pages the ESP
// answers. The Sandbox pages full runs by offset and incremental ones by its cursor.
import { strict as assert } from 'node:assert';
import { MockActivityEnvironment } from '@temporalio/testing';
import { createActivities } from '../../src/activities';
import type { ExportPartResult } from '../../src/activities/export';
import { ProcessorRegistry } from '../../src/processors/registry';
import { SandboxProcessor } from '../../src/processors/sandbox';
import type { ContactPage, ListMode } from '../../src/processors/types';
import { startEspresso, type Espresso } from '../support/espresso';

describe('an export that pages by offset', function () {
  this.timeout(60_000);
  let e: Espresso;
  before(async () => {
    e = await startEspresso();
  });
  after(() => e.stop());

  /**
   * Activities whose Sandbox processor counts its listing requests (and the most on their way at
   * once); `pageAfter` replaces the processor's own naming of the next page, and `answered` can
   * hold a page back.
   */
  const counting = (
    pageAfter?: (cursor: string | undefined) => string | undefined,
    /** Runs after the ESP answered the page at `cursor`, before the listing gets it. */
    answered?: (cursor: string | undefined, pagesAsked: () => number) => Promise<void>,
    /** Drops the list's size from each page, as an ESP that does not say it. */
    noTotal = false,
  ) => {
    const seen = { inFlight: 0, most: 0, pages: 0 };
    class Counted extends SandboxProcessor {
      override async listPage(...args: Parameters<SandboxProcessor['listPage']>): Promise<ContactPage> {
        seen.pages++;
        seen.most = Math.max(seen.most, ++seen.inFlight);
        try {
          const page = await super.listPage(...args);
          await answered?.(args[1], () => seen.pages);
          if (noTotal) delete page.total;
          return page;
        } finally {
          seen.inFlight--;
        }
      }
      override pageAfter(cursor: string | undefined, mode: ListMode, total?: number): string | undefined {
        return pageAfter ? pageAfter(cursor) : super.pageAfter(cursor, mode, total);
      }
    }
    const processor = new Counted(
      { secrets: e.stores.secrets },
      { url: e.sandbox.url, rateLimit: { requests: 1000, perMs: 1000 }, concurrency: 4, pageSize: 1000 },
    );
    const activities = createActivities({
      stores: e.stores,
      processors: new ProcessorRegistry([processor]),
      alerts: async () => undefined,
    });
    return { seen, activities };
  };

  /**
   * A configuration of 5,500 contacts whose Sandbox account answers after 20 ms and allows two
   * contact pages in flight (a third would be answered 429), its field made.
   */
  const slowList = async () => {
    const { configuration, account } = await e.connect(5_500);
    account.settings.faults.latencyMs = 20;
    account.settings.limits.listing = { requestsPerSecond: 0, concurrency: 2 };
    await new MockActivityEnvironment().run(counting().activities.runMaintenance, configuration.id);
    return { configuration, account };
  };
  const answered429 = (account: string) => e.sandbox.server.stats.get(account)?.byStatus['429'] ?? 0;

  const exportAll = async (
    activities: ReturnType<typeof counting>['activities'],
    input: { configurationId: string; runDate: string; mode: ListMode; exportSlots?: number },
  ) => {
    const result: ExportPartResult = await new MockActivityEnvironment().run(activities.exportPart, {
      ...input,
      stopAfterChunks: 100,
      besideChunks: true,
      chunksBeside: 1,
    });
    assert.equal(result.done, true);
    // Every contact in one chunk line (chunkValues throws on a contact in two).
    assert.equal((await e.chunkValues(input.configurationId, input.runDate)).size, 5_500);
    assert.equal(result.contacts, 5_500);
  };

  it("full: two pages on their way at once with two slots, none past the list's size (three at most where the ESP does not say it); one at a time otherwise", async () => {
    const { configuration, account } = await slowList();
    const input = { configurationId: configuration.id, mode: 'full' as const };

    const two = counting();
    await exportAll(two.activities, { ...input, runDate: '2026-12-01', exportSlots: 2 });
    assert.equal(two.seen.most, 2);
    // Pages at 0, 1,000, ... 5,000 (the last, of 500): the Sandbox says the list's size with each.
    assert.equal(two.seen.pages, 6);

    // Without the size, those asked for meanwhile too: up to two on their way and two more
    // answered, so at most three past the end.
    const blind = counting(undefined, undefined, true);
    await exportAll(blind.activities, { ...input, runDate: '2026-12-04', exportSlots: 2 });
    assert.equal(blind.seen.most, 2);
    assert.ok(blind.seen.pages >= 7 && blind.seen.pages <= 9, `${blind.seen.pages} pages asked`);

    // A run of an earlier version gives the export one slot: one page at a time.
    const one = counting();
    await exportAll(one.activities, { ...input, runDate: '2026-12-02' });
    assert.equal(one.seen.most, 1);
    assert.equal(one.seen.pages, 6);

    // Incremental runs page with the Sandbox's cursor, which names each next page.
    const chained = counting();
    await exportAll(chained.activities, {
      ...input,
      runDate: '2026-12-03',
      mode: 'incremental',
      exportSlots: 2,
    });
    assert.equal(chained.seen.most, 1);
    assert.equal(answered429(account.id), 0);
  });

  it('a page that names another next page than the one asked for: those asked after it are dropped, every contact listed once', async () => {
    const { configuration, account } = await slowList();
    // Named 700 contacts on: every page asked for ahead is the wrong one.
    const wrong = counting((cursor) => String(Number(cursor ?? 0) + 700));
    await exportAll(wrong.activities, {
      configurationId: configuration.id,
      runDate: '2026-12-01',
      mode: 'full',
      exportSlots: 2,
    });
    // Each of the six pages read, and wrong pages asked for beside each; a dropped page still on
    // its way holds its slot: the ESP never has more than two.
    assert.ok(wrong.seen.pages >= 12, `${wrong.seen.pages} pages asked`);
    assert.equal(answered429(account.id), 0);
  });

  it('a slow page does not hold back the ones after it: their slots ask for the next pages meanwhile', async () => {
    const { configuration, account } = await slowList();
    // The page at 1,000 answers 400 ms late, the others after 20 ms.
    let askedMeanwhile = 0;
    const late = counting(undefined, async (cursor, asked) => {
      if (cursor !== '1000') return;
      const before = asked();
      await new Promise((r) => setTimeout(r, 400));
      askedMeanwhile = asked() - before;
    });
    await exportAll(late.activities, {
      configurationId: configuration.id,
      runDate: '2026-12-01',
      mode: 'full',
      exportSlots: 2,
    });
    // The page after it answered and freed its slot: the next one was asked then, not only once
    // the late page answered (one page, before 2026-12-05 17:20).
    assert.ok(askedMeanwhile >= 2, `${askedMeanwhile} pages asked meanwhile`);
    assert.equal(late.seen.most, 2);
    assert.equal(answered429(account.id), 0);
  });
});
