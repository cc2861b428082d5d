// The benchmark's `--cluster` topology: `espresso cluster` itself, as a child process (PostgreSQL,
// the Temporal server built from the Go module proxy, moto, N workers, web, Sandbox), on free ports
// in the bench's temp directory. Its supervisor owns those processes: a disruption stops or kills
// one, as a crash or an operator would, and the supervisor starts it again.
import { spawn } from 'node:child_process';
import { closeSync, openSync, readdirSync, readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePortBeside, freeTemporalPort } from '../src/cluster/temporal-server';
import { readPid, splitAddress } from '../src/lib/supervise';
import { projectRoot } from '../src/paths';
import { waitUntilReachable } from '../src/temporal/dev-server';

export type ClusterTopology = Awaited<ReturnType<typeof startClusterTopology>>;

/** The environment every process of the topology and the bench itself use (moto as S3 + Secrets Manager). */
export async function clusterEnv(): Promise<NodeJS.ProcessEnv> {
  const temporal = await freeTemporalPort();
  const taken = new Set<number>();
  return {
    TEMPORAL_ADDRESS: `127.0.0.1:${temporal}`,
    ESPRESSO_WEB_PORT: String(await freePortBeside(temporal, taken)),
    ESPRESSO_TEMPORAL_UI_PORT: String(await freePortBeside(temporal, taken)),
    ESPRESSO_STORAGE: 'aws',
    ESPRESSO_S3_BUCKET: 'espresso',
    ESPRESSO_AWS_ENDPOINT: `http://127.0.0.1:${await freePortBeside(temporal, taken)}`,
    AWS_ACCESS_KEY_ID: 'emulator',
    AWS_SECRET_ACCESS_KEY: 'emulator',
    // The AWS SDK's notice about future Node versions, printed once by every process otherwise.
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
  };
}

/**
 * Starts `espresso cluster --workers <workers>` with `env` (clusterEnv() included) and waits for
 * its `ready`. Everything it prints goes to <data dir>/cluster.log.
 */
export async function startClusterTopology(env: NodeJS.ProcessEnv, workers: number) {
  const dataDir = env.ESPRESSO_DATA_DIR!;
  const address = env.TEMPORAL_ADDRESS!;
  const motoPort = new URL(env.ESPRESSO_AWS_ENDPOINT!).port;
  const postgresPort = await freePortBeside(
    splitAddress(address)[1],
    new Set([env.ESPRESSO_WEB_PORT, env.ESPRESSO_TEMPORAL_UI_PORT, motoPort].map(Number)),
  );
  const logFile = join(dataDir, 'cluster.log');
  const log = openSync(logFile, 'a');
  const cli = join(projectRoot, 'dist/src/cli/main.js');
  const args = ['cluster', '--workers', String(workers), '--postgres-port', String(postgresPort)];
  const child = spawn(process.execPath, [cli, ...args, '--moto-port', motoPort], {
    env,
    stdio: ['ignore', log, log],
  });
  closeSync(log);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const output = () => readFileSync(logFile, 'utf8');
  // The first start on a machine builds the Temporal server (minutes).
  for (const deadline = Date.now() + 15 * 60_000; !output().includes('press Ctrl-C to stop');) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGINT');
      await exited;
      throw new Error(`espresso cluster did not start:\n${output().slice(-3_000)}`);
    }
    await sleep(200);
  }
  const pidFile = (name: string) => join(dataDir, 'run', `cluster-${name}.pid`);
  const handedOut = new Set<number>();

  /** Stops a server with `signal` and waits for the supervisor's next one to be up. */
  async function restart(name: 'temporal' | 'postgresql', signal: NodeJS.Signals, up: () => Promise<void>) {
    const old = readPid(pidFile(name));
    if (!old) throw new Error(`no ${name} pid in ${pidFile(name)}`);
    process.kill(old, signal);
    for (const deadline = Date.now() + 120_000; ; await sleep(200)) {
      const next = readPid(pidFile(name));
      if (next && next !== old && alive(next)) break;
      if (Date.now() > deadline) throw new Error(`the cluster did not restart ${name} within 120 s`);
    }
    await up();
  }

  return {
    address,
    /** The pid of a worker process of the cluster not handed out before (a restarted one, after a kill). */
    async nextWorkerPid(): Promise<number> {
      for (const deadline = Date.now() + 120_000; ; await sleep(200)) {
        const pid = childPids(child.pid!, 'worker/main.js').find((p) => !handedOut.has(p) && alive(p));
        if (pid) {
          handedOut.add(pid);
          return pid;
        }
        if (Date.now() > deadline) throw new Error('the cluster started no further worker within 120 s');
      }
    },
    /** SIGTERM to the Temporal server (a clean stop); the supervisor starts it again. */
    restartTemporal: () => restart('temporal', 'SIGTERM', () => waitUntilReachable(address, 120_000)),
    /** SIGINT to PostgreSQL (its "fast" shutdown: clients cut off); the supervisor starts it again. */
    restartDatabase: () => restart('postgresql', 'SIGINT', () => waitForPort(postgresPort, 60_000)),
    /** Stopped as an operator would (Ctrl-C): every process it started stops with it. */
    async stop() {
      if (child.exitCode !== null) return;
      child.kill('SIGINT');
      // SIGKILL if it has not stopped in 3 minutes; the timer must not keep the bench alive after.
      const timer = setTimeout(() => child.kill('SIGKILL'), 180_000);
      await exited.finally(() => clearTimeout(timer));
    },
  };
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return !readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z ');
  } catch {
    return false;
  }
}

/** The children of `parent` whose command line holds `word`, from /proc. */
function childPids(parent: number, word: string): number[] {
  return readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .map(Number)
    .filter((pid) => {
      try {
        const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
        const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
        return ppid === parent && readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(word);
      } catch {
        return false;
      }
    });
}

async function waitForPort(port: number, timeoutMs: number): Promise<void> {
  for (const deadline = Date.now() + timeoutMs; ; await sleep(250)) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => (socket.destroy(), resolve(true)));
      socket.once('error', () => resolve(false));
    });
    if (open) return;
    if (Date.now() > deadline)
      throw new Error(`nothing listens on 127.0.0.1:${port} after ${timeoutMs / 1000}s`);
  }
}
