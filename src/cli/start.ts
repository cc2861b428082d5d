// `espresso start` (what `npm start` runs after provisioning): starts the embedded Temporal dev
// server, the worker and the web server, restarts any that crash, and stops them all in order
// (worker, web, then Temporal) on Ctrl-C or SIGTERM.
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { codecEndpoint } from '../codec';
import type { AppConfig } from '../config';
import { loadOrCreateKeyFile } from '../lib/key-file';
import {
  assertPortFree,
  claimDataDir,
  displayHost,
  say,
  splitAddress,
  Supervisor,
  waitForHttp,
} from '../lib/supervise';
import { connectClient } from '../temporal/client';
import { TASK_QUEUE } from '../temporal/constants';
import { applySchedule } from '../temporal/schedule';
import { waitForWorker } from '../temporal/worker-ready';
import { startDevServer, type DevServer } from '../temporal/dev-server';
import { describeTemporalCli, resolveTemporalCli } from '../tools';
import { workerEnv, WORKER_NODE_FLAGS } from '../worker/node-options';
import { loadConfigOrExit } from '../load-config';
import { describeApplied } from './runs';

export async function start(): Promise<void> {
  const config = loadConfigOrExit();
  await mkdir(config.dataDir, { recursive: true });
  const runDir = join(config.dataDir, 'run');
  await mkdir(runDir, { recursive: true });
  await claimDataDir('start', runDir, [
    { name: 'Temporal dev server', pidFile: join(runDir, 'temporal.pid'), commandIncludes: 'start-dev' },
  ]);
  const supervisor = new Supervisor(runDir);

  try {
    if (config.temporal.embedded) {
      const devServer = await startEmbeddedTemporal(config, supervisor.stopping);
      supervisor.finally(() => devServer.stop());
    }
    await startApplication(supervisor, config, { workers: 1 });
    sayReady(config, [`  Temporal Web UI        ${config.temporal.uiUrl}`]);
  } catch (err) {
    console.error(`[espresso] start failed: ${(err as Error).message}`);
    await supervisor.stopAll(1);
  }
}

/**
 * The Sandbox (when enabled), the workers and the web server, under `supervisor`; resolves once
 * the web server answers and a worker polls, with the daily schedule applied.
 */
export async function startApplication(
  supervisor: Supervisor,
  config: AppConfig,
  options: { workers: number; env?: NodeJS.ProcessEnv },
): Promise<void> {
  await assertPortFree(config.web.host, config.web.port, 'ESPRESSO_WEB_PORT');
  if (config.sandbox.enabled) {
    await assertPortFree(config.sandbox.host, config.sandbox.port, 'ESPRESSO_SANDBOX_PORT');
    supervisor.startNode('sandbox', join(__dirname, '../sandbox/main.js'), [], options.env);
  }
  for (let i = 1; i <= options.workers; i++) {
    const name = options.workers === 1 ? 'worker' : `worker-${i}`;
    // One metrics port each: ESPRESSO_METRICS_PORT for the first worker, the next ones above it.
    const metrics = config.metrics ? { ESPRESSO_METRICS_PORT: String(config.metrics.port + i - 1) } : {};
    supervisor.startNode(name, join(__dirname, '../worker/main.js'), WORKER_NODE_FLAGS, {
      ...options.env,
      ...workerEnv({ ...process.env, ...options.env }),
      ...metrics,
    });
  }
  supervisor.startNode('web', join(__dirname, '../web/main.js'), [], options.env);
  await waitForHttp(`${webUrl(config)}/healthz`, 60_000);
  const { client, payloadKeys, close } = await connectClient(config);
  const schedule = await waitForWorker(client.connection, config.temporal.namespace, TASK_QUEUE, 120_000)
    .then(() => applySchedule(client, config.schedule, payloadKeys.current))
    .finally(close);
  say(`${describeApplied(schedule)}; next run ${schedule.nextRuns[0]?.toISOString() ?? 'unknown'}`);
}

/** The `ready` block: where to reach what, with the lines only this topology has. */
export function sayReady(config: AppConfig, extraLines: string[]): void {
  say('ready:');
  say(`  web (connect an ESP)   ${webUrl(config)}/`);
  say(`  health                 ${webUrl(config)}/healthz`);
  for (const line of extraLines) say(line);
  say(`  Temporal gRPC          ${config.temporal.address}`);
  if (config.sandbox.enabled) {
    const token = config.sandbox.adminToken ? 'ESPRESSO_SANDBOX_ADMIN_TOKEN' : config.sandbox.adminTokenFile;
    say(`  Sandbox ESP            ${config.sandbox.url} (test-mode ESP; admin token: ${token})`);
  }
  say('press Ctrl-C to stop');
}

function webUrl(config: AppConfig): string {
  return `http://${displayHost(config.web.host)}:${config.web.port}`;
}

async function startEmbeddedTemporal(config: AppConfig, stopping: () => boolean): Promise<DevServer> {
  const cli = resolveTemporalCli(config.temporal.cliPath);
  say(describeTemporalCli(cli));
  const [ip, port] = splitAddress(config.temporal.address);
  await assertPortFree(ip, port, 'TEMPORAL_ADDRESS');
  await assertPortFree(ip, config.temporal.uiPort, 'ESPRESSO_TEMPORAL_UI_PORT');
  const options = {
    cli,
    ip,
    port,
    uiPort: config.temporal.uiPort,
    namespace: config.temporal.namespace,
    dbFile: join(config.dataDir, 'temporal.sqlite'),
    logFile: join(config.dataDir, 'temporal.log'),
    // The web server's codec route, so the Web UI shows decrypted payloads to the operator.
    uiCodecEndpoint: codecEndpoint(
      config.web.publicUrl,
      config.web.sessionSecret ?? (await loadOrCreateKeyFile(config.web.sessionSecretFile)),
    ),
  };
  say(`starting Temporal dev server on ${config.temporal.address} (state in ${options.dbFile})`);
  let server = await startDevServer(options);
  // Supervise: a dev server that dies is restarted on the same database file.
  const pidFile = join(config.dataDir, 'run', 'temporal.pid');
  if (server.pid) await writeFile(pidFile, String(server.pid));
  const handle: DevServer = {
    address: server.address,
    exited: server.exited,
    stop: async () => {
      await server.stop();
      await rm(pidFile, { force: true });
    },
  };
  const watch = (): void => {
    void server.exited.then(async () => {
      if (stopping()) return;
      say(`Temporal dev server exited unexpectedly; restarting (log: ${options.logFile})`);
      await sleep(1_000);
      server = await startDevServer(options);
      if (server.pid) await writeFile(pidFile, String(server.pid));
      watch();
    });
  };
  watch();
  return handle;
}
