import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { serveMetrics } from '../src/metrics';
import { projectRoot } from '../src/paths';
import { configurationSyncWorkflow } from '../src/workflows';
import { startEspresso, type Espresso } from './support/espresso';
import { freePort } from './support/ports';
import { temporalEnv, testPayloadKeysEnv } from './support/temporal';
import { tempDir } from './support/tmp';

describe('metrics', function () {
  this.timeout(120_000);
  let e: Espresso;
  before(async () => {
    e = await startEspresso();
  });
  after(() => e.stop());

  it('counts contacts by result and kind, ESP requests by status, 429s and pacing waits, next to the SDK metrics', async () => {
    const { configuration, list, account } = await e.connect(1_000);
    for (const i of [1, 2, 3]) list.suppressed.add(i);
    // 5 requests/s allowed, 2,000/s paced: 429s are certain.
    account.settings.limits.requestsPerSecond = 5;
    try {
      await e.client.workflow.execute(configurationSyncWorkflow, {
        taskQueue: e.taskQueue,
        workflowId: `sync/${configuration.id}/metrics`,
        args: [{ configurationId: configuration.id, runDate: '2026-11-28', mode: 'incremental' }],
      });
    } finally {
      account.settings.limits.requestsPerSecond = 0;
    }
    const sdk = createServer((_req, res) => res.end('temporal_workflow_completed_total 1\n'));
    await new Promise<void>((r) => sdk.listen(0, '127.0.0.1', r));
    const port = await freePort();
    const server = await serveMetrics(
      e.metrics,
      '127.0.0.1',
      port,
      `http://127.0.0.1:${(sdk.address() as AddressInfo).port}/metrics`,
    );
    try {
      const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      assert.match(text, /espresso_contacts_total\{esp="sandbox",result="updated",kind=""\} 997/);
      assert.match(
        text,
        /espresso_contacts_total\{esp="sandbox",result="rejected",kind="contact_suppressed"\} 3/,
      );
      assert.match(text, /espresso_esp_requests_total\{esp="sandbox",status="200"\} \d+/);
      assert.match(text, /espresso_esp_requests_total\{esp="sandbox",status="429"\} [1-9]/);
      assert.match(text, /espresso_esp_rate_limited_total\{esp="sandbox"\} [1-9]/);
      assert.match(text, /espresso_esp_request_duration_seconds_count\{esp="sandbox"\} \d+/);
      assert.match(text, /espresso_rate_limit_wait_seconds_total\{esp="sandbox"\} /);
      assert.match(text, /temporal_workflow_completed_total 1/);
    } finally {
      server.close();
      sdk.close();
    }
  });

  it('is served by a worker process on ESPRESSO_METRICS_PORT, with the Temporal SDK runtime metrics; SIGTERM still ends the process', async () => {
    const env = await temporalEnv();
    const port = await freePort();
    const worker = spawn(process.execPath, [join(projectRoot, 'dist/src/worker/main.js')], {
      env: {
        ...process.env,
        TEMPORAL_ADDRESS: env.address,
        ESPRESSO_PAYLOAD_KEYS: testPayloadKeysEnv,
        ESPRESSO_DATA_DIR: await tempDir(),
        ESPRESSO_METRICS_PORT: String(port),
        ESPRESSO_LOG_LEVEL: 'error',
      },
      stdio: 'ignore',
    });
    try {
      let text = '';
      for (let i = 0; i < 120 && !/temporal_/.test(text); i++) {
        await sleep(250);
        text = await fetch(`http://127.0.0.1:${port}/metrics`).then(
          (r) => r.text(),
          () => '',
        );
      }
      assert.match(text, /# HELP espresso_contacts_total/);
      assert.match(text, /temporal_\w+/, 'no SDK runtime metric');
      // The metrics server must not keep the process alive past its shutdown (a deploy's SIGKILL).
      const exited = new Promise<number | null>((r) => worker.once('exit', (code) => r(code)));
      worker.kill('SIGTERM');
      const code = await Promise.race([exited, sleep(10_000).then(() => 'still running' as const)]);
      assert.equal(code, 0, 'the worker did not exit within 10 s of SIGTERM');
    } finally {
      if (worker.exitCode === null) worker.kill('SIGKILL');
    }
  });
});
