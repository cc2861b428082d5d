// The cluster's Go binaries (the Temporal server, its SQL tool, its Web UI) take minutes to build on
// a fresh machine. The build starts in the background as the test run starts, at the lowest CPU
// priority (it takes what the tests leave idle), and the tests that start a cluster wait for it.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { setPriority } from 'node:os';
import { join } from 'node:path';
import { temporalServerBin } from '../../src/cluster/temporal-server';
import { webUiBin } from '../../src/cluster/web-ui';
import { projectRoot } from '../../src/paths';

let build: { child: ChildProcess; done: Promise<void> } | undefined;

/** Starts building the cluster's binaries unless they are built (the run's root hook). */
export function startClusterBuild(): void {
  if (build || [temporalServerBin, webUiBin].every((bin) => existsSync(bin))) return;
  const module = (name: string) => JSON.stringify(join(projectRoot, 'dist/src/cluster', name));
  const child = spawn(
    process.execPath,
    [
      '-e',
      `require(${module('temporal-server')}).provisionTemporalServer(); require(${module('web-ui')}).provisionWebUi();`,
    ],
    { stdio: ['ignore', 'inherit', 'inherit'], detached: true },
  );
  // Inherited by the go commands it starts.
  setPriority(child.pid!, 19);
  const done = new Promise<void>((resolve, reject) =>
    child.once('exit', (code, signal) =>
      code === 0
        ? resolve()
        : reject(new Error(`building the cluster's binaries failed (${signal ?? code})`)),
    ),
  );
  done.catch(() => undefined); // reported to the tests that wait for it
  build = { child, done };
}

/** Resolves once the background build (if any) is done; rejects if it failed. */
export async function clusterBuilt(): Promise<void> {
  await build?.done;
}

/** The run's end: a build nobody waited for (no cluster test ran) is stopped, not left running. */
export async function stopClusterBuild(): Promise<void> {
  if (!build || build.child.exitCode !== null || build.child.signalCode !== null) return;
  process.kill(-build.child.pid!, 'SIGKILL');
  await build.done.catch(() => undefined);
}
