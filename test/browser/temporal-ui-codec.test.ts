// The Temporal Web UI, as `npm start` runs it (--ui-codec-endpoint at the web server's codec route),
// showing an encrypted workflow input decrypted, in a real browser.
import { strict as assert } from 'node:assert';
import { mkdir } from 'node:fs/promises';
import type { Server } from 'node:http';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { chromium, type Browser } from 'playwright-core';
import { codecEndpoint, dataConverter } from '../../src/codec';
import { projectRoot } from '../../src/paths';
import { startDevServer, type DevServer } from '../../src/temporal/dev-server';
import { resolveTemporalCli } from '../../src/tools';
import { createApp } from '../../src/web/app';
import { ensureChromium, CHROMIUM, CHROMIUM_ARGS } from '../support/chromium';
import { freePort } from '../support/ports';
import { testPayloadKeys } from '../support/temporal';
import { tempDir, tempStores } from '../support/tmp';
import { webDeps } from '../support/web';

const artifacts = join(projectRoot, 'test', 'artifacts');
const SECRET = 'ui-codec-test-secret-0123456789abcdef';

describe('browser: the Temporal Web UI decrypts payloads through the codec route', function () {
  this.timeout(300_000);
  let browser: Browser | undefined;
  let server: Server | undefined;
  let temporal: DevServer | undefined;
  let connection: Connection | undefined;

  before(function () {
    const missing = ensureChromium();
    if (missing) {
      console.warn(`\n      !!! SKIPPING BROWSER TESTS: ${missing} !!!\n`);
      this.skip();
    }
    if (resolveTemporalCli().source === 'sdk-download') this.skip();
  });

  after(async () => {
    await browser?.close();
    server?.close();
    await connection?.close();
    await temporal?.stop();
  });

  it('shows the workflow input in clear text, fetched from <web>/codec/<token>/decode', async () => {
    await mkdir(artifacts, { recursive: true });
    const dir = await tempDir();
    const webPort = await freePort();
    const web = `http://127.0.0.1:${webPort}`;
    const uiPort = await freePort();
    const ui = `http://127.0.0.1:${uiPort}`;
    temporal = await startDevServer({
      cli: resolveTemporalCli(),
      ip: '127.0.0.1',
      port: await freePort(),
      uiPort,
      namespace: 'default',
      dbFile: join(dir, 'temporal.sqlite'),
      logFile: join(dir, 'temporal.log'),
      uiCodecEndpoint: codecEndpoint(web, SECRET),
    });
    connection = await Connection.connect({ address: temporal.address });
    const stores = await tempStores();
    const app = createApp(
      webDeps(stores, async () => connection!, {
        payloadKeys: testPayloadKeys,
        temporalUiUrl: ui,
        web: { publicUrl: web, sessionSecret: SECRET, admin: {} },
      }),
    );
    server = await new Promise<Server>((resolve) => {
      const s = app.listen(webPort, '127.0.0.1', () => resolve(s));
    });

    // A run waiting for a worker: its input is in history, encrypted.
    const marker = `cfg_${'ab12'.repeat(5)}`;
    const client = new Client({ connection, dataConverter: dataConverter(testPayloadKeys) });
    const workflowId = `sync/${marker}/2026-11-28`;
    await client.workflow.start('configurationSyncWorkflow', {
      taskQueue: 'no-worker-here',
      workflowId,
      args: [{ configurationId: marker, runDate: '2026-11-28', mode: 'incremental' }],
    });

    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    const page = await browser.newPage();
    const decodes: number[] = [];
    page.on('response', (res) => {
      if (res.url().startsWith(`${web}/codec/`) && res.request().method() === 'POST')
        decodes.push(res.status());
    });
    try {
      await page.goto(`${ui}/namespaces/default/workflows/${encodeURIComponent(workflowId)}`);
      // "incremental" is only in the decrypted input (the marker is in the workflow id as well).
      await page.locator('body', { hasText: '"incremental"' }).waitFor({ timeout: 60_000 });
      const input = await page.locator('body').innerText();
      assert.match(input, /"?mode"?:\s*"incremental"/, 'the decoded input is shown');
      assert.ok(decodes.length > 0 && decodes.every((s) => s === 200), `codec calls: ${decodes}`);
      await page.screenshot({ path: join(artifacts, 'temporal-ui-decoded-input.png'), fullPage: true });
    } catch (err) {
      await page.screenshot({ path: join(artifacts, 'temporal-ui-codec-failure.png'), fullPage: true });
      throw err;
    }
  });
});
