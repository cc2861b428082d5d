// A publisher connecting Brevo with its API key in a real browser (Debian chromium driven by
// playwright-core), against the Brevo fake at Brevo's own limits; the first run then fills every
// contact on the dev server.
import { strict as assert } from 'node:assert';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { type Browser } from 'playwright-core';
import { projectRoot } from '../../src/paths';
import { BrevoProcessor } from '../../src/processors/brevo';
import { TASK_QUEUE } from '../../src/temporal/constants';
import { BrevoFake, type FakeAccount } from '../fakes/brevo-server';
import { ensureChromium } from '../support/chromium';
import { startEspresso, type Espresso } from '../support/espresso';
import { tempStores } from '../support/tmp';
import { browserAndWeb } from '../support/browser-web';

const artifacts = join(projectRoot, 'test', 'artifacts');
const ADMIN = { username: 'ops', password: 'browser-test-password' };

describe('browser: connecting Brevo with an API key', function () {
  this.timeout(300_000);
  let e: Espresso;
  let fake: BrevoFake;
  let account: FakeAccount;
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
    fake = await new BrevoFake().start();
    account = fake.newAccount();
    fake.seed(account, 50);
    const stores = await tempStores();
    // The worker and the web server each build the processor, as espresso does, on the same stores.
    const processor = () => new BrevoProcessor({ secrets: stores.secrets }, { apiBaseUrl: fake.apiBaseUrl });
    // The first run goes to the real task queue, so this worker polls it.
    e = await startEspresso({ taskQueue: TASK_QUEUE, stores, processors: [processor()] });
    ({ web, browser, stop: stopWeb } = await browserAndWeb(e, [processor()], ADMIN));
  });

  after(async () => {
    await stopWeb?.();
    await e?.stop();
    await fake?.stop();
  });

  it('refuses a wrong key without echoing it, then connects, shows {{ contact.LCEE }} and fills every contact', async () => {
    const context = await browser.newContext({ httpCredentials: ADMIN });
    const page = await context.newPage();
    await page.goto(`${web}/`);
    await page.getByRole('link', { name: 'Connect Brevo with a Brevo API key' }).click();
    const wrong = 'xkeysib-PLANTED0browser0wrong0key';
    await page.getByLabel('Brevo API key').fill(wrong);
    await page.getByRole('button', { name: 'Connect' }).click();
    await page.waitForSelector('h1');
    assert.ok(!(await page.content()).includes(wrong), 'the refused key is echoed');
    await page.screenshot({ path: join(artifacts, 'connect-brevo-refused.png'), fullPage: true });

    await page.goto(`${web}/auth/brevo/key`);
    await page.getByLabel('Brevo API key').fill(account.apiKey);
    await page.getByRole('button', { name: 'Connect' }).click();
    await page.waitForSelector('#merge-tag');
    assert.equal(await page.textContent('#merge-tag'), 'lctg={{ contact.LCEE }}');
    assert.match((await page.textContent('h1'))!, new RegExp(`Connected: ${account.companyName}`));
    assert.ok(!(await page.content()).includes(account.apiKey), 'the key is echoed');
    await page.screenshot({ path: join(artifacts, 'connect-brevo.png'), fullPage: true });
    const configurationId = (await page.textContent('#configuration-id'))!;

    // The first run (maintenance + full sync) ran in Temporal and wrote every contact's value.
    const deadline = Date.now() + 60_000;
    let completed = false;
    while (!completed && Date.now() < deadline) {
      for await (const wf of e.client.workflow.list({
        query: `WorkflowType = 'configurationSyncWorkflow' AND WorkflowId STARTS_WITH 'sync/${configurationId}/'`,
      })) {
        completed ||= wf.status.name === 'COMPLETED';
      }
      if (!completed) await new Promise((r) => setTimeout(r, 300));
    }
    assert.ok(completed, 'the first run did not complete');
    const values = [...account.contacts.values()].map((c) => c.attributes.LCEE);
    assert.equal(values.filter((v) => typeof v === 'string' && v.length === 22).length, 50);
    assert.equal(new Set(values).size, 50);
    await context.close();
  });
});
