// The embedded Temporal dev server that `npm start` supervises: the pinned CLI binary when one is
// found, else the SDK's downloaded one.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Connection } from '@temporalio/client';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import type { TemporalCli } from '../tools';

export interface DevServerOptions {
  cli: TemporalCli;
  ip: string;
  port: number;
  uiPort: number;
  namespace: string;
  /** SQLite file: state survives restarts. Without one the server keeps its state in memory. */
  dbFile?: string;
  logFile: string;
  /** The Web UI decodes encrypted payloads through this codec server. */
  uiCodecEndpoint?: string;
}

export interface DevServer {
  address: string;
  /** The server's process id, when espresso spawned it (not for the SDK download). */
  pid?: number;
  /** Resolves when the server process ends, for whatever reason. */
  exited: Promise<void>;
  stop(): Promise<void>;
}

export async function startDevServer(options: DevServerOptions): Promise<DevServer> {
  if (options.dbFile) await mkdir(dirname(options.dbFile), { recursive: true });
  const dbArgs = options.dbFile ? ['--db-filename', options.dbFile] : [];
  const address = `${options.ip}:${options.port}`;
  const codecArgs = options.uiCodecEndpoint ? ['--ui-codec-endpoint', options.uiCodecEndpoint] : [];
  if (options.cli.source === 'sdk-download') {
    const env = await TestWorkflowEnvironment.createLocal({
      server: {
        executable: { type: 'cached-download', version: options.cli.version },
        ip: options.ip,
        port: options.port,
        ui: true,
        uiPort: options.uiPort,
        namespace: options.namespace,
        ...(options.dbFile ? { dbFilename: options.dbFile } : {}),
        extraArgs: codecArgs,
      },
    });
    let ended: () => void;
    const exited = new Promise<void>((resolve) => (ended = resolve));
    return { address, exited, stop: async () => (await env.teardown(), ended()) };
  }

  // The server writes its log file itself: through a pipe, it would die of SIGPIPE on its next
  // line once a killed supervisor's end of the pipe is gone, instead of being found and stopped
  // by the next start.
  const log = openSync(options.logFile, 'a');
  const child: ChildProcess = spawn(
    options.cli.path,
    [
      'server',
      'start-dev',
      '--ip',
      options.ip,
      '--port',
      String(options.port),
      '--ui-port',
      String(options.uiPort),
      '--namespace',
      options.namespace,
      ...dbArgs,
      '--log-level',
      'warn',
      '--ui-disable-news-fetch',
      // A worker completing a workflow task gets the activities it schedules back at once, instead
      // of through the task queue: fewer server round trips per run (docs/scale.md).
      '--dynamic-config-value',
      'system.enableActivityEagerExecution=true',
      ...codecArgs,
    ],
    { stdio: ['ignore', log, log] },
  );
  closeSync(log);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const failedEarly = exited.then(() => {
    throw new Error(`the Temporal dev server exited during start; see ${options.logFile}`);
  });
  await Promise.race([waitUntilReachable(address, 60_000), failedEarly]);
  return {
    address,
    pid: child.pid,
    exited,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      // Cleared once it exits: a pending timer would keep this process alive for 20 s more.
      const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

export async function waitUntilReachable(address: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const connection = await Connection.connect({ address, connectTimeout: 2_000 });
      try {
        await connection.workflowService.getSystemInfo({});
        return;
      } finally {
        await connection.close();
      }
    } catch (err) {
      if (Date.now() > deadline) {
        throw new Error(
          `Temporal at ${address} not reachable after ${timeoutMs / 1000}s: ${(err as Error).message}`,
        );
      }
      await sleep(250);
    }
  }
}
