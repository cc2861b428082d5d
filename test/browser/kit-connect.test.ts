// A publisher connecting Kit in a real browser (Debian chromium driven by playwright-core), against
// the Kit fake: the OAuth round trip and the key form, each followed by its first run, with the
// processor at Kit's own pace.
import { strict as assert } from 'node:assert';
import { type Browser, type Page } from 'playwright-core';
import { KitProcessor } from '../../src/processors/kit-esp';
import { TASK_QUEUE } from '../../src/temporal/constants';
import { FakeKit, type FakeKitAccount } from '../fakes/kit-server';
import { ensureChromium } from '../support/chromium';
import { startEspresso, type Espresso } from '../support/espresso';
import { tempStores } from '../support/tmp';
import { browserAndWeb } from '../support/browser-web';

describe('browser: connecting Kit (against its fake)', function () {
  this.timeout(300_000);
  let fake: FakeKit;
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
    fake = await new FakeKit().start();
    const stores = await tempStores();
    // The processor espresso builds, at Kit's own limits (the fake's accounts keep them too).
    const processor = new KitProcessor(
      { secrets: stores.secrets },
      { oauth: { clientId: fake.client.id, clientSecret: fake.client.secret }, apiBaseUrl: fake.url },
    );
    // The first run goes to the real task queue, so this worker polls it.
    e = await startEspresso({ taskQueue: TASK_QUEUE, stores, processors: [processor] });
    ({ web, browser, stop: stopWeb } = await browserAndWeb(e, [processor]));
  });

  after(async () => {
    await stopWeb?.();
    await e?.stop();
    await fake?.stop();
  });

  /** The success page's merge tag, then every subscriber filled by the first run. */
  async function connected(page: Page, account: FakeKitAccount, seeded: string[]) {
    await page.waitForSelector('#merge-tag');
    assert.equal(await page.textContent('#merge-tag'), 'lctg={{ subscriber.lcee }}');
    assert.match((await page.textContent('h1'))!, new RegExp(`Connected: ${account.name}`));
    const deadline = Date.now() + 120_000;
    let filled = 0;
    while (Date.now() < deadline) {
      filled = seeded.filter((id) => fake.valueOf(account, id, 'lcee')).length;
      if (filled === seeded.length) break;
      await new Promise((r) => setTimeout(r, 300));
    }
    assert.equal(filled, seeded.length, 'subscribers the first run filled');
  }

  it('connects with OAuth (Kit’s consent, callback), shows the merge tag, and the first run fills every subscriber', async () => {
    const account = fake.newAccount();
    const seeded = fake.seed(account, 30);
    fake.consentAccount = account;
    const page = await browser.newPage();
    await page.goto(`${web}/`);
    await page.getByRole('link', { name: 'Connect Kit' }).click();
    await connected(page, account, seeded);
    assert.ok(fake.requests.some((r) => r.path === '/v4/bulk/custom_fields/subscribers' && r.status === 200));
    await page.close();
  });

  it('connects with a V4 API key through the key form, and the first run fills every subscriber', async () => {
    const account = fake.newAccount();
    const seeded = fake.seed(account, 8);
    const page = await browser.newPage();
    await page.goto(`${web}/`);
    await page.getByRole('link', { name: 'or use an API key' }).click();
    await page.getByLabel('Kit V4 API key').fill(account.apiKey);
    await page.getByRole('button', { name: 'Connect' }).click();
    await connected(page, account, seeded);
    assert.ok(!(await page.content()).includes(account.apiKey), 'the key is not echoed');
    assert.deepEqual(fake.problems, []);
    await page.close();
  });
});
