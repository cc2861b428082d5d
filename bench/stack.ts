// What the benchmark runs against: a fresh Temporal dev server, the Sandbox ESP and the worker as
// separate processes (as in production), local blob and secret stores in a temp directory; or,
// with `cluster`, the production topology (`espresso cluster`, bench/cluster.ts) in that directory.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import { dataConverter, formatPayloadKeys, newPayloadKeys } from '../src/codec';
import { loadConfig, oauthRedirectUri } from '../src/config';
import { freePort } from '../src/lib/free-port';
import { projectRoot } from '../src/paths';
import { sandboxAdmin } from '../src/sandbox/admin';
import type { SettingsChange } from '../src/sandbox/settings';
import { TASK_QUEUE } from '../src/temporal/constants';
import { startDevServer } from '../src/temporal/dev-server';
import { waitForWorker } from '../src/temporal/worker-ready';
import { resolveTemporalCli } from '../src/tools';
import { workerEnv, WORKER_NODE_FLAGS } from '../src/worker/node-options';
import { alive, clusterEnv, startClusterTopology, type ClusterTopology } from './cluster';

export const ACCOUNTS = {
  open: { id: 'acct_bench', apiKey: 'bench-key-000001' },
  limited: { id: 'acct_limited', apiKey: 'limited-key-0001', requestsPerSecond: 50, concurrency: 10 },
};

/** A Sandbox account as the Sandbox's config file describes it (src/sandbox/setup.ts). */
export interface SandboxAccountConfig {
  id: string;
  name: string;
  apiKeys: string[];
  lists: Array<{ id: string; name: string; contacts: number }>;
  settings?: SettingsChange;
}

/**
 * Where a scenario's Temporal runs: the dev server keeping its state in memory (the default), the
 * dev server on a SQLite file (`--server-db-file`), or `espresso cluster` (`--cluster`).
 */
export interface Topology {
  cluster?: boolean;
  serverDbFile?: boolean;
}

/** The cluster topology runs its own workers, started with the one pacing they all use. */
export interface ClusterOption {
  workers: number;
  pacing: { rps: number; concurrency: number };
}

export async function startStack(
  options: {
    espTimeoutMs?: number;
    accounts?: SandboxAccountConfig[];
    cluster?: ClusterOption;
    /** The dev server keeps its state in a SQLite file (so `restartTemporal` can restart it). */
    serverDbFile?: boolean;
  } = {},
) {
  const dir = await mkdtemp(join(tmpdir(), 'espresso-bench-'));
  // A fresh server every run; its output goes to a log file so --json keeps stdout clean. It keeps
  // its state in memory unless `serverDbFile` asks for the file (a run that restarts it must): a
  // Temporal cluster runs on machines of its own, and the dev server's SQLite file on these cores
  // would be measured as espresso's time (docs/performance.md, "The Temporal server").
  const serverOptions = {
    cli: resolveTemporalCli(),
    ip: '127.0.0.1',
    port: await freePort(),
    uiPort: await freePort(),
    namespace: 'default',
    ...(options.serverDbFile ? { dbFile: join(dir, 'temporal.sqlite') } : {}),
    logFile: join(dir, 'temporal.log'),
  };
  const topologyEnv = options.cluster ? await clusterEnv() : {};
  // The bench's own stores reach moto with the emulator's credentials, as the cluster's processes do.
  Object.assign(process.env, topologyEnv);
  let server = options.cluster ? undefined : await startDevServer(serverOptions);
  const address = server?.address ?? topologyEnv.TEMPORAL_ADDRESS!;
  // The worker process and this client share one key ring, so the benchmark pays for encryption too.
  const payloadKeys = newPayloadKeys('bench');
  const sandboxPort = await freePort();
  const sandboxAdminToken = randomBytes(32).toString('base64url');
  const sandboxConfig = join(dir, 'sandbox.json');
  await writeFile(
    sandboxConfig,
    JSON.stringify({
      accounts: [
        { id: ACCOUNTS.open.id, name: 'Bench', apiKeys: [ACCOUNTS.open.apiKey], lists: [] },
        {
          id: ACCOUNTS.limited.id,
          name: 'Bench (rate-limited)',
          apiKeys: [ACCOUNTS.limited.apiKey],
          lists: [],
          settings: {
            limits: {
              requestsPerSecond: ACCOUNTS.limited.requestsPerSecond,
              concurrency: ACCOUNTS.limited.concurrency,
            },
          },
        },
        ...(options.accounts ?? []),
      ],
    }),
  );
  const baseEnv: NodeJS.ProcessEnv = {
    ...process.env,
    ESPRESSO_DATA_DIR: dir,
    ESPRESSO_SECRET_KEY: randomBytes(32).toString('base64'),
    TEMPORAL_ADDRESS: address,
    ESPRESSO_PAYLOAD_KEYS: formatPayloadKeys(payloadKeys),
    ESPRESSO_SANDBOX_PORT: String(sandboxPort),
    ESPRESSO_SANDBOX_CONFIG: sandboxConfig,
    ESPRESSO_SANDBOX_ADMIN_TOKEN: sandboxAdminToken,
    ESPRESSO_LOG_LEVEL: 'error',
    ...(options.espTimeoutMs ? { ESPRESSO_ESP_TIMEOUT_MS: String(options.espTimeoutMs) } : {}),
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
  };
  const config = loadConfig(baseEnv);
  /** The Sandbox: its admin API's token, and espresso's redirect URI it has registered. */
  const sandboxEndpoint = {
    url: `http://127.0.0.1:${sandboxPort}`,
    adminToken: sandboxAdminToken,
    redirectUri: oauthRedirectUri(config.web.publicUrl, 'sandbox'),
  };
  // The cluster starts its own Sandbox, workers and web server.
  const cluster: ClusterTopology | undefined = options.cluster
    ? await startClusterTopology(
        { ...baseEnv, ...workerPacingEnv(options.cluster.pacing) },
        options.cluster.workers,
      )
    : undefined;
  const sandbox = cluster
    ? undefined
    : spawn(process.execPath, [join(projectRoot, 'dist/src/sandbox/main.js')], {
        env: baseEnv,
        stdio: 'inherit',
      });
  // Stopped from outside (Ctrl-C, a test's timeout): nothing the stack started outlives it.
  const children = new Set<ChildProcess>(sandbox ? [sandbox] : []);
  const abort = (signal: NodeJS.Signals) => {
    for (const child of children) child.kill('SIGKILL');
    void (server ?? cluster)!.stop().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  };
  process.once('SIGTERM', abort);
  process.once('SIGINT', abort);
  const connection = await Connection.connect({ address });
  const nativeConnection = await NativeConnection.connect({ address });
  const env = {
    address,
    connection,
    nativeConnection,
    payloadKeys,
    client: new Client({ connection, dataConverter: dataConverter(payloadKeys) }),
  };
  for (let i = 0; ; i++) {
    try {
      await sandboxAdmin(sandboxEndpoint, '/state');
      break;
    } catch {
      if (i > 100) throw new Error('the Sandbox ESP did not start');
      await sleep(100);
    }
  }

  /**
   * A worker process paced for `pacing` (the ESP's documented limits), with `limitsEnv` telling it
   * more (the Sandbox's listing and writing limits, a profile); returns its peak RSS on stop. On
   * the cluster: the next of the cluster's own workers (a restarted one after a kill),
   * which its supervisor stops with the rest.
   */
  const startWorker = async (
    pacing: { rps: number; concurrency: number },
    limitsEnv: NodeJS.ProcessEnv = {},
  ) => {
    if (cluster) {
      if (Object.keys(limitsEnv).length > 0)
        throw new Error(`the cluster's workers run with its own settings`);
      if (JSON.stringify(pacing) !== JSON.stringify(options.cluster!.pacing)) {
        throw new Error(`the cluster's workers are paced ${JSON.stringify(options.cluster!.pacing)}`);
      }
      const pid = await cluster.nextWorkerPid();
      await waitForWorker(env.connection, 'default', TASK_QUEUE, 120_000, { pid });
      return {
        pid,
        peakRssMb: () => vmHwmMb(pid),
        async kill(): Promise<unknown> {
          process.kill(pid, 'SIGKILL');
          while (alive(pid)) await sleep(50);
          return undefined;
        },
        stop: async (): Promise<number> => (alive(pid) ? vmHwmMb(pid) : 0),
      };
    }
    const child: ChildProcess = spawn(
      process.execPath,
      [...WORKER_NODE_FLAGS, join(projectRoot, 'dist/src/worker/main.js')],
      // Its output (the Temporal core logs to stdout) goes to stderr: stdout is the bench's JSON.
      {
        env: { ...baseEnv, ...workerEnv(baseEnv), ...workerPacingEnv(pacing, limitsEnv) },
        stdio: ['ignore', 2, 2],
      },
    );
    children.add(child);
    child.once('exit', () => children.delete(child));
    await waitForWorker(env.connection, 'default', TASK_QUEUE, 120_000, { pid: child.pid });
    return {
      pid: child.pid!,
      /** Peak resident memory (VmHWM) in MB so far. */
      peakRssMb: () => vmHwmMb(child.pid!),
      /** SIGKILL, as a crash would: no graceful shutdown, in-flight activities are lost. */
      kill(): Promise<unknown> {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGKILL');
        return exited;
      },
      async stop(): Promise<number> {
        const peak = vmHwmMb(child.pid!);
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
        return peak;
      },
    };
  };

  return {
    dir,
    env,
    /** Stops the Temporal server and starts it again on the same port and database. */
    async restartTemporal() {
      if (cluster) return cluster.restartTemporal();
      if (!options.serverDbFile) {
        throw new Error(
          'this stack keeps the dev server in memory: start it with serverDbFile to restart it',
        );
      }
      await server!.stop();
      server = await startDevServer(serverOptions);
    },
    /** The cluster's PostgreSQL stopped and started again (the dev server has none). */
    async restartDatabase() {
      if (!cluster) throw new Error('the dev server has no database server to restart');
      await cluster.restartDatabase();
    },
    config,
    /** The environment espresso's processes of this stack run with (CLI commands included). */
    processEnv: baseEnv,
    sandbox: sandboxEndpoint,
    /**
     * The processes besides the worker that a run's CPU time is spent in: the Sandbox's and the
     * dev server's (after a restart, the new one's); the cluster's are its own, not counted.
     */
    pids: () => ({ sandbox: sandbox?.pid, temporal: server?.pid }),
    startWorker,
    async stop() {
      process.removeListener('SIGTERM', abort);
      process.removeListener('SIGINT', abort);
      // A worker its caller did not stop (a failed test's) does not outlive the stack.
      for (const child of children) if (child !== sandbox) child.kill('SIGKILL');
      sandbox?.kill('SIGTERM');
      await connection.close();
      await nativeConnection.close();
      await (server ?? cluster)!.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export type Stack = Awaited<ReturnType<typeof startStack>>;

/**
 * CPU time (user and system) a process has used so far, in seconds; undefined when it is not there.
 * Linux counts it in /proc/<pid>/stat in ticks of 1/100 s (USER_HZ, the same on every architecture).
 */
export function cpuSeconds(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces): state is the 3rd, utime the 14th.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return undefined;
  }
}

function vmHwmMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? 0);
  return Math.round(kb / 1024);
}

/**
 * What a worker of the stack is told of the Sandbox account's limits: `pacing` as per-second
 * figures, and `limitsEnv` on top. A worker told a profile (ESPRESSO_SANDBOX_CLIENT_PROFILE) keeps
 * within the profile's own figures: per-second ones would replace its rate's window (SendGrid's 600
 * a minute would become 10 a second, whose shares round to whole requests a second).
 */
export function workerPacingEnv(
  pacing: { rps: number; concurrency: number },
  limitsEnv: NodeJS.ProcessEnv = {},
): NodeJS.ProcessEnv {
  const perSecond = limitsEnv.ESPRESSO_SANDBOX_CLIENT_PROFILE
    ? {}
    : {
        ESPRESSO_SANDBOX_CLIENT_RPS: String(pacing.rps),
        ESPRESSO_SANDBOX_CLIENT_CONCURRENCY: String(pacing.concurrency),
      };
  return { ...perSecond, ...limitsEnv };
}
