// `espresso start` (what `npm start` runs after provisioning): starts the embedded Temporal dev
// server, the worker and the web server, restarts any that crash, and stops them all in order
// (worker, web, then Temporal) on Ctrl-C or SIGTERM.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { codecEndpoint } from '../codec';
import type { AppConfig } from '../config';
import { loadOrCreateKeyFile } from '../lib/key-file';
import { connectClient } from '../temporal/client';
import { TASK_QUEUE } from '../temporal/constants';
import { applySchedule } from '../temporal/schedule';
import { waitForWorker } from '../temporal/worker-ready';
import { startDevServer, type DevServer } from '../temporal/dev-server';
import { describeTemporalCli, resolveTemporalCli } from '../tools';
import { WORKER_NODE_FLAGS } from '../worker/node-options';
import { loadConfigOrExit } from './load-config';
import { describeApplied } from './runs';

const say = (msg: string) => console.log(`[espresso] ${msg}`);
const STOP_GRACE_MS = 20_000;

export async function start(): Promise<void> {
  const config = loadConfigOrExit();
  await mkdir(config.dataDir, { recursive: true });
  const runDir = join(config.dataDir, 'run');
  await mkdir(runDir, { recursive: true });
  await claimDataDir(runDir);

  let stopping = false;
  const children: Supervised[] = [];
  let devServer: DevServer | undefined;

  const stopAll = async (code: number) => {
    if (stopping) return;
    stopping = true;
    say('stopping...');
    for (const child of [...children].reverse()) await child.stop();
    await devServer?.stop();
    await rm(join(runDir, 'supervisor.pid'), { force: true });
    say('stopped');
    process.exit(code);
  };
  process.once('SIGINT', () => void stopAll(0));
  process.once('SIGTERM', () => void stopAll(0));

  try {
    if (config.temporal.embedded) {
      devServer = await startEmbeddedTemporal(config, () => stopping);
    }
    await assertPortFree(config.web.host, config.web.port, 'ESPRESSO_WEB_PORT');
    if (config.sandbox.enabled) {
      await assertPortFree(config.sandbox.host, config.sandbox.port, 'ESPRESSO_SANDBOX_PORT');
      children.push(new Supervised('sandbox', join(__dirname, '../sandbox/main.js'), () => stopping));
    }
    children.push(
      new Supervised('worker', join(__dirname, '../worker/main.js'), () => stopping, WORKER_NODE_FLAGS),
    );
    children.push(new Supervised('web', join(__dirname, '../web/main.js'), () => stopping));
    const webUrl = `http://${displayHost(config.web.host)}:${config.web.port}`;
    await waitForHttp(`${webUrl}/healthz`, 60_000);
    const { client, payloadKeys, close } = await connectClient(config);
    const schedule = await waitForWorker(client.connection, config.temporal.namespace, TASK_QUEUE, 120_000)
      .then(() => applySchedule(client, config.schedule, payloadKeys.current))
      .finally(close);
    say(`${describeApplied(schedule)}; next run ${schedule.nextRuns[0]?.toISOString() ?? 'unknown'}`);
    say('ready:');
    say(`  web (connect an ESP)   ${webUrl}/`);
    say(`  health                 ${webUrl}/healthz`);
    say(`  Temporal Web UI        ${config.temporal.uiUrl}`);
    say(`  Temporal gRPC          ${config.temporal.address}`);
    if (config.sandbox.enabled) {
      const token = config.sandbox.adminToken
        ? 'ESPRESSO_SANDBOX_ADMIN_TOKEN'
        : config.sandbox.adminTokenFile;
      say(`  Sandbox ESP            ${config.sandbox.url} (test-mode ESP; admin token: ${token})`);
    }
    say('press Ctrl-C to stop');
  } catch (err) {
    console.error(`[espresso] start failed: ${(err as Error).message}`);
    await stopAll(1);
  }
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

/** A child Node process that is restarted with backoff when it exits on its own. */
class Supervised {
  private child?: ChildProcess;
  private restarts = 0;

  constructor(
    private readonly name: string,
    private readonly script: string,
    private readonly stopping: () => boolean,
    private readonly nodeFlags: string[] = [],
  ) {
    this.spawn();
  }

  private spawn(): void {
    const startedAt = Date.now();
    // Own process group: Ctrl-C reaches only the supervisor, which stops children in order.
    const child = spawn(process.execPath, [...this.nodeFlags, this.script], {
      stdio: 'inherit',
      detached: true,
      env: { ...process.env, ESPRESSO_SUPERVISOR_PID: String(process.pid) },
    });
    this.child = child;
    child.once('exit', (code, signal) => {
      if (this.stopping()) return;
      if (Date.now() - startedAt > 60_000) this.restarts = 0;
      const delay = Math.min(30_000, 1_000 * 2 ** this.restarts++);
      say(`${this.name} exited (${signal ?? `code ${code}`}); restarting in ${delay / 1000}s`);
      setTimeout(() => !this.stopping() && this.spawn(), delay);
    });
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
    await exited;
    clearTimeout(timer);
  }
}

/**
 * One `espresso start` per data directory: a second one would fight over ports and the SQLite file.
 * A dev server left behind by a supervisor that was killed outright is stopped first.
 */
async function claimDataDir(runDir: string): Promise<void> {
  const supervisorPid = readPid(join(runDir, 'supervisor.pid'));
  if (supervisorPid && supervisorPid !== process.pid && isAlive(supervisorPid)) {
    throw new Error(
      `another espresso start (pid ${supervisorPid}) is using this data directory; stop it first`,
    );
  }
  const temporalPid = readPid(join(runDir, 'temporal.pid'));
  if (temporalPid && isAlive(temporalPid) && commandLine(temporalPid).includes('start-dev')) {
    say(`stopping a Temporal dev server (pid ${temporalPid}) left over from an earlier run`);
    process.kill(temporalPid, 'SIGTERM');
    for (let i = 0; i < 100 && isAlive(temporalPid); i++) await sleep(200);
  }
  await writeFile(join(runDir, 'supervisor.pid'), String(process.pid));
}

function readPid(file: string): number | undefined {
  return existsSync(file) ? Number(readFileSync(file, 'utf8')) || undefined : undefined;
}

function commandLine(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch {
    return '';
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function splitAddress(address: string): [string, number] {
  const i = address.lastIndexOf(':');
  return [address.slice(0, i), Number(address.slice(i + 1))];
}

function displayHost(host: string): string {
  return host === '0.0.0.0' || host === '127.0.0.1' ? 'localhost' : host;
}

async function assertPortFree(host: string, port: number, variable: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const probe = createServer();
    probe.once('error', (err: NodeJS.ErrnoException) =>
      reject(
        new Error(
          err.code === 'EADDRINUSE'
            ? `port ${port} on ${host} is already in use (another espresso or Temporal?); stop it or change ${variable}`
            : `cannot listen on ${host}:${port} (${err.code}); check ${variable}`,
        ),
      ),
    );
    probe.listen(port, host, () => probe.close(() => resolve()));
  });
}

async function waitForHttp(url: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(5_000) });
      if (res.ok) return;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) throw new Error(`${url} did not answer within ${timeoutMs / 1000}s`);
    await sleep(300);
  }
}
