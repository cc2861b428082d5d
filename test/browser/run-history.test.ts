// An operator in a real browser (Debian chromium driven by playwright-core): from /admin to why a
// contact was rejected in three clicks, the results downloaded, and the failed rows retried while
// the configuration page shows the retry's progress.
import { strict as assert } from 'node:assert';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type Browser } from 'playwright-core';
import { projectRoot } from '../../src/paths';
import { TASK_QUEUE } from '../../src/temporal/constants';
import { startConfigurationRun, today } from '../../src/temporal/runs';
import type { ConfigurationSyncResult } from '../../src/workflows/configuration-run';
import { ensureChromium } from '../support/chromium';
import { startEspresso, type Espresso } from '../support/espresso';
import { browserAndWeb } from '../support/browser-web';

const artifacts = join(projectRoot, 'test', 'artifacts');
const ADMIN = { username: 'ops', password: 'browser-test-password' };
const CONTACTS = 40;

describe('browser: run history, rejected rows and retry of failed rows', function () {
  this.timeout(300_000);
  let e: Espresso;
  let browser: Browser;
  let stopWeb: (() => Promise<void>) | undefined;
  let web: string;

  before(async function () {
    const missing = ensureChromium();
    if (missing) {
      console.warn(`\n      !!! SKIPPING BROWSER TESTS: ${missing} !!!\n`);
      this.skip();
    }
    await mkdir(artifacts, { recursive: true });
    // The page starts the retry on the real task queue, so this worker polls it.
    e = await startEspresso({ taskQueue: TASK_QUEUE });
    ({ web, browser, stop: stopWeb } = await browserAndWeb(e, [e.processor], ADMIN));
  });

  after(async () => {
    await stopWeb?.();
    await e?.stop();
  });

  async function run(configurationId: string, dryRun: boolean): Promise<ConfigurationSyncResult> {
    const handle = await startConfigurationRun(
      e.client,
      e.stores,
      { configurationId, runDate: today(), mode: 'incremental', dryRun },
      dryRun ? 'dry-run' : 'manual',
    );
    return (await handle.result()) as ConfigurationSyncResult;
  }

  it('finds a rejected contact in three clicks, downloads the results, retries the failed rows', async () => {
    const { configuration, account, list } = await e.connect(CONTACTS);
    account.settings.faults.rowRejectRate = 0.25;
    await run(configuration.id, true);
    const written = await run(configuration.id, false);
    assert.ok(written.rejected > 0 && written.updated > 0, JSON.stringify(written));

    const context = await browser.newContext({ httpCredentials: ADMIN, acceptDownloads: true });
    const page = await context.newPage();
    await page.goto(`${web}/admin`);
    // Click 1: the configuration's page, its runs newest first.
    await page.click(`tr[data-configuration="${configuration.id}"] a.configuration`);
    const statuses = await page.locator('#runs tr[data-run] .status').allTextContents();
    assert.deepEqual(statuses, ['completed', 'completed (dry run)']);
    await page.screenshot({ path: join(artifacts, 'admin-configuration.png'), fullPage: true });

    // Click 2: the newest run: its rejections by kind and rejected rows.
    await page.locator('#runs tr[data-run] a').first().click();
    assert.equal(await page.locator('#next-page').count(), 0);
    assert.match((await page.textContent('#kinds'))!, new RegExp(`contact_suppressed${written.rejected}`));
    const contacts = await page
      .locator('#rejected tr[data-contact]')
      .evaluateAll((rows) => rows.map((r) => r.getAttribute('data-contact')!));
    assert.equal(contacts.length, written.rejected);
    await page.screenshot({ path: join(artifacts, 'admin-run.png'), fullPage: true });

    // Click 3: one contact's row and why.
    await page.fill('input[name="contact"]', contacts[0]!);
    await page.click('button:has-text("Find contact")');
    const found = page.locator('#rejected tr[data-contact]');
    assert.equal(await found.count(), 1);
    // The ESP named the contact by its address; the page says why without it.
    assert.match(
      (await found.textContent())!,
      /contact_suppressed: \[email\] is suppressed and cannot be updated/,
    );
    assert.doesNotMatch((await page.content())!, /subscriber\d+@/);

    // The results as CSV: one line per contact of the run, the rejected ones with their reason.
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#csv')]);
    const csv = (await readFile((await download.path())!, 'utf8')).trim().split('\r\n');
    assert.equal(csv[0], 'chunk,line,contactId,status,value,reason');
    assert.equal(csv.length - 1, written.exported);
    assert.equal(csv.filter((l) => l.includes(',rejected,')).length, written.rejected);
    assert.ok(!csv.some((l) => l.includes('@')), 'an address in the results CSV');

    // Retry, confirmed first; slow answers keep the retry running long enough to watch it.
    account.settings.faults.rowRejectRate = 0;
    account.settings.faults.latencyMs = 2_500;
    await page.click('#retry');
    assert.match((await page.textContent('h1'))!, /Retry the failed rows/);
    await page.screenshot({ path: join(artifacts, 'admin-retry-confirm.png'), fullPage: true });
    await page.click('button:has-text("Start the retry")');
    assert.match((await page.textContent('#flash'))!, /Retry of the failed rows started/);
    // The page reloads itself (no script) and shows the retry's live progress from Temporal.
    await page.waitForSelector('#running strong', { timeout: 60_000 });
    assert.match((await page.textContent('#progress'))!, /phase \w+ · chunks \d+ of \d+/);
    await page.screenshot({ path: join(artifacts, 'admin-running.png'), fullPage: true });
    // ...until the retry ends: then it is the newest run of the history.
    await page.waitForSelector('#runs tr[data-run*="redispatch"]', { timeout: 120_000 });
    assert.match((await page.locator('#runs tr[data-run]').first().getAttribute('data-run'))!, /redispatch/);
    assert.equal(
      (await page.locator('#runs tr[data-run] .status').first().textContent())?.trim(),
      'completed',
    );
    assert.equal(await page.locator('#running strong').count(), 0);
    assert.equal(list.values.get('lcee')?.filter(Boolean).length, CONTACTS);

    // The retry is in the audit log: who, what, from where; /admin shows it, and links the log.
    await page.goto(`${web}/admin`);
    const newest = page.locator('#audit tr').nth(1);
    assert.match(
      (await newest.textContent())!,
      new RegExp(`operator opsretry\\s*${configuration.id}failed rows of run`),
    );
    await page.click('#audit-log');
    assert.equal(await page.textContent('h1'), 'Audit log');
    await page.screenshot({ path: join(artifacts, 'admin-audit.png'), fullPage: true });

    // The publisher's page, from the link the configuration page shows; disconnect, confirmed.
    await page.goto(`${web}/admin/configurations/${configuration.id}`);
    const link = (await page.inputValue('#publisher-link'))!;
    const publisher = await browser.newPage();
    await publisher.goto(link);
    assert.match((await publisher.textContent('#connection'))!, /Connected/);
    assert.equal(await publisher.locator('#runs tr').count(), 3, 'the header and the two runs that wrote');
    await publisher.screenshot({ path: join(artifacts, 'publisher.png'), fullPage: true });
    await publisher.click('#disconnect');
    await publisher.click('button:has-text("Disconnect")');
    assert.equal(await publisher.textContent('h1'), 'Disconnected');
    assert.equal((await e.stores.configurations.get(configuration.id)).status, 'disabled');
    await publisher.close();
    await context.close();
  });
});
