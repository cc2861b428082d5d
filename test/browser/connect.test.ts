// A publisher connecting the Sandbox ESP in a real browser (Debian chromium driven by playwright-core).
import { strict as assert } from 'node:assert';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { type Browser } from 'playwright-core';
import { oauthRedirectUri } from '../../src/config';
import { projectRoot } from '../../src/paths';
import { SandboxProcessor } from '../../src/processors/sandbox';
import { SANDBOX_CLIENT } from '../../src/sandbox/oauth-client';
import { TASK_QUEUE } from '../../src/temporal/constants';
import { ensureChromium } from '../support/chromium';
import { startEspresso, type Espresso } from '../support/espresso';
import { browserAndWeb } from '../support/browser-web';

const artifacts = join(projectRoot, 'test', 'artifacts');
const ADMIN = { username: 'ops', password: 'browser-test-password' };

describe('browser: connecting the Sandbox ESP', function () {
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
    // The first run goes to the real task queue, so this worker polls it.
    e = await startEspresso({ taskQueue: TASK_QUEUE });
    e.sandbox.state.seed('acct_demo', 'list_newsletter', 50);
    ({
      web,
      browser,
      stop: stopWeb,
    } = await browserAndWeb(
      e,
      (publicUrl) => {
        // espresso's redirect URI at this public URL, registered with the Sandbox as with a real ESP.
        e.sandbox.state.clients
          .get(SANDBOX_CLIENT.id)!
          .redirectUris.push(oauthRedirectUri(publicUrl, 'sandbox'));
        // The web server's processor must reach the same Sandbox, with the browser-facing public URL.
        return [
          new SandboxProcessor(
            { secrets: e.stores.secrets },
            { url: e.sandbox.url, rateLimit: { requests: 100, perMs: 1000 }, concurrency: 4 },
          ),
        ];
      },
      ADMIN,
    ));
  });

  after(async () => {
    await stopWeb?.();
    await e?.stop();
  });

  it('connects with OAuth, picks a list, shows the merge tag, then the admin page and Temporal show it', async () => {
    const context = await browser.newContext({ httpCredentials: ADMIN });
    const page = await context.newPage();
    await page.goto(`${web}/`);
    await page.getByRole('link', { name: 'Connect Sandbox ESP' }).click();
    // The Sandbox's consent page.
    await page.getByRole('button', { name: 'Approve' }).click();
    await page.getByLabel('Morning Newsletter').check();
    await page.getByRole('button', { name: 'Connect this list' }).click();
    await page.waitForSelector('#merge-tag');
    assert.equal(await page.textContent('#merge-tag'), 'lctg={{contact.lcee}}');
    assert.match((await page.textContent('h1'))!, /Connected: Demo Coffee Roasters · Morning Newsletter/);
    await page.screenshot({ path: join(artifacts, 'connect-success.png'), fullPage: true });
    const configurationId = (await page.textContent('#configuration-id'))!;

    await page.goto(`${web}/admin`);
    const row = page.locator(`tr[data-configuration="${configurationId}"]`);
    assert.equal((await row.locator('.status').textContent())?.trim(), 'active');
    await page.screenshot({ path: join(artifacts, 'admin.png'), fullPage: true });

    // The first run (maintenance + full sync) ran in Temporal and filled the list.
    const deadline = Date.now() + 60_000;
    let completed = false;
    while (!completed && Date.now() < deadline) {
      // The configuration run itself (its dispatch child finishes before the summary is written).
      for await (const wf of e.client.workflow.list({
        query: `WorkflowType = 'configurationSyncWorkflow' AND WorkflowId STARTS_WITH 'sync/${configurationId}/'`,
      })) {
        completed ||= wf.status.name === 'COMPLETED';
      }
      if (!completed) await new Promise((r) => setTimeout(r, 300));
    }
    assert.ok(completed, 'the first run did not complete');
    const list = e.sandbox.state.accounts.get('acct_demo')!.lists.get('list_newsletter')!;
    assert.equal(list.values.get('lcee')?.filter(Boolean).length, 50);

    await page.goto(`${web}/admin`);
    assert.match((await row.textContent())!, /completed/);
    await context.close();
  });

  it('shows a plain failure page when the publisher denies consent', async () => {
    const page = await browser.newPage();
    await page.goto(`${web}/`);
    await page.getByRole('link', { name: 'Connect Sandbox ESP' }).click();
    await page.getByRole('button', { name: 'Deny' }).click();
    await page.waitForSelector('h1');
    assert.equal(await page.textContent('h1'), 'You did not give access');
    assert.ok(await page.getByRole('link', { name: 'Try again' }).isVisible());
    await page.screenshot({ path: join(artifacts, 'connect-denied.png'), fullPage: true });
    await page.close();
  });
});
