// A publisher connecting beehiiv in a real browser (Debian chromium driven by playwright-core),
// against the fake beehiiv: the API key form with the publication picker, and the OAuth sign-in;
// each first run fills the publication's field.
import { strict as assert } from 'node:assert';
import { type Browser, type Page } from 'playwright-core';
import { BeehiivProcessor } from '../../src/processors/beehiiv';
import { TASK_QUEUE } from '../../src/temporal/constants';
import { BeehiivFake, type FakePublication } from '../fakes/beehiiv-server';
import { ensureChromium } from '../support/chromium';
import { startEspresso, type Espresso } from '../support/espresso';
import { tempStores } from '../support/tmp';
import { browserAndWeb } from '../support/browser-web';

describe('browser: connecting beehiiv (against its fake)', function () {
  this.timeout(300_000);
  let fake: BeehiivFake;
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
    fake = await new BeehiivFake().start();
    const stores = await tempStores();
    // The web server and the worker share one processor, with the stores the web flow saves to.
    const processor = new BeehiivProcessor(
      { secrets: stores.secrets },
      {
        apiBaseUrl: fake.url,
        authBaseUrl: fake.origin,
        oauth: { clientId: fake.oauth.client.id, clientSecret: fake.oauth.client.secret },
        jobPollMs: 5,
      },
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

  /** The success page's merge tag, then every subscription of the publication filled by the first run. */
  async function connectedAndFilled(page: Page, publication: FakePublication) {
    await page.waitForSelector('#merge-tag');
    assert.equal(await page.textContent('#merge-tag'), 'lctg={{lcee}}');
    const deadline = Date.now() + 60_000;
    const filled = () => publication.subscriptions.filter((s) => s.fields.get('lcee')).length;
    while (filled() < publication.subscriptions.length && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 300));
    }
    assert.equal(filled(), publication.subscriptions.length, 'the first run filled every subscription');
  }

  it('connects with an API key, picks one of two publications, and the first run fills it', async () => {
    const { apiKey, publications } = fake.addOrganization(2);
    publications[1]!.seed(40);
    const page = await browser.newPage();
    await page.goto(`${web}/`);
    await page.getByRole('link', { name: 'or use an API key' }).click();
    await page.getByLabel('beehiiv API key').fill(apiKey);
    await page.getByRole('button', { name: 'Connect' }).click();
    await page.getByLabel('Newsletter 2').check();
    await page.getByRole('button', { name: 'Connect this list' }).click();
    await connectedAndFilled(page, publications[1]!);
    assert.ok(!(await page.content()).includes(apiKey), 'the key is not shown');
    await page.close();
  });

  it('signs in with OAuth (consent on beehiiv) and the first run fills the publication', async () => {
    const { organization, publications } = fake.addOrganization(1);
    publications[0]!.seed(25);
    fake.consentOrganization = organization;
    const page = await browser.newPage();
    await page.goto(`${web}/`);
    await page.getByRole('link', { name: 'Connect beehiiv', exact: true }).click();
    await connectedAndFilled(page, publications[0]!);
    await page.close();
  });
});
