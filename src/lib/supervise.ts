// Process supervision shared by `espresso start` (the embedded stack) and `espresso cluster` (the
// production topology): children restarted with backoff, stopped in order, one supervisor per
// data directory, and the port and HTTP checks both make before saying `ready`.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export const say = (msg: string) => console.log(`[espresso] ${msg}`);
const STOP_GRACE_MS = 20_000;

export interface ProcessSpec {
  name: string;
  command: string;
  args: string[];
  env?: NodeJS.ProcessEnv;
  /** stdout and stderr appended here; the supervisor's terminal when absent. */
  logFile?: string;
  /** Written while the process runs, so a later supervisor can stop it if this one is killed outright. */
  pidFile?: string;
  /** Run as this user (the supervisor runs as root and the program refuses root). */
  user?: { uid: number; gid: number };
  /** The signal that asks for a clean, prompt stop (PostgreSQL: SIGINT, its "fast" shutdown). */
  stopSignal?: NodeJS.Signals;
  /** Runs before every start, while nothing of the process runs (moto mends its recording). */
  beforeStart?: () => void;
  /** Brings a restarted process back to where the first one was (moto replays its recording). */
  afterRestart?: () => Promise<void>;
}

/** A child process that is restarted with backoff when it exits on its own. */
export class Supervised {
  private child?: ChildProcess;
  private restarts = 0;

  constructor(
    readonly spec: ProcessSpec,
    private readonly stopping: () => boolean,
  ) {
    this.spawn();
  }

  /** Resolves when the current process ends (to notice one that dies while starting). */
  exited(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
    return new Promise((resolve) => child.once('exit', () => resolve()));
  }

  private spawn(): void {
    const { spec } = this;
    const startedAt = Date.now();
    // The child writes its log file itself: through a pipe, it would die of SIGPIPE on its next
    // line once a killed supervisor's end of the pipe is gone.
    try {
      spec.beforeStart?.();
    } catch (err) {
      say(`${spec.name}: before start: ${(err as Error).message}`);
    }
    const log = spec.logFile ? openSync(spec.logFile, 'a') : undefined;
    // Own process group: Ctrl-C reaches only the supervisor, which stops children in order.
    const child = spawn(spec.command, spec.args, {
      stdio: log === undefined ? 'inherit' : ['ignore', log, log],
      detached: true,
      env: spec.env ?? process.env,
      ...(spec.user ?? {}),
    });
    if (log !== undefined) closeSync(log);
    this.child = child;
    if (spec.pidFile && child.pid) void writeFile(spec.pidFile, String(child.pid));
    child.once('error', (err) => say(`${spec.name} could not start: ${err.message}`));
    child.once('exit', (code, signal) => {
      if (spec.pidFile) void rm(spec.pidFile, { force: true });
      if (this.stopping()) return;
      if (Date.now() - startedAt > 60_000) this.restarts = 0;
      const delay = Math.min(30_000, 1_000 * 2 ** this.restarts++);
      const where = spec.logFile ? ` (log: ${spec.logFile})` : '';
      say(`${spec.name} exited (${signal ?? `code ${code}`})${where}; restarting in ${delay / 1000}s`);
      setTimeout(() => {
        if (this.stopping()) return;
        this.spawn();
        spec.afterRestart?.().catch((err: Error) => say(`${spec.name}: after restart: ${err.message}`));
      }, delay);
    });
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill(this.spec.stopSignal ?? 'SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
    await exited;
    clearTimeout(timer);
  }
}

/**
 * The children of one supervisor, stopped in the reverse order they started (then `finally`
 * steps) on SIGINT or SIGTERM, or when starting failed.
 */
export class Supervisor {
  private readonly children: Supervised[] = [];
  private readonly finallySteps: Array<() => Promise<void>> = [];
  private stoppingNow = false;
  readonly stopping = () => this.stoppingNow;

  constructor(private readonly runDir: string) {
    process.once('SIGINT', () => void this.stopAll(0));
    process.once('SIGTERM', () => void this.stopAll(0));
  }

  start(spec: ProcessSpec): Supervised {
    const child = new Supervised(spec, this.stopping);
    this.children.push(child);
    return child;
  }

  /** A Node script of this project, with the supervisor's pid so it exits when orphaned. */
  startNode(name: string, script: string, nodeFlags: string[] = [], env: NodeJS.ProcessEnv = {}): Supervised {
    return this.start({
      name,
      command: process.execPath,
      args: [...nodeFlags, script],
      env: { ...process.env, ...env, ESPRESSO_SUPERVISOR_PID: String(process.pid) },
    });
  }

  /** Runs after every child has stopped (a server started outside this class). */
  finally(step: () => Promise<void>): void {
    this.finallySteps.unshift(step);
  }

  async stopAll(code: number): Promise<void> {
    if (this.stoppingNow) return;
    this.stoppingNow = true;
    say('stopping...');
    for (const child of [...this.children].reverse()) await child.stop();
    for (const step of this.finallySteps) await step();
    await rm(join(this.runDir, 'supervisor.pid'), { force: true });
    say('stopped');
    process.exit(code);
  }
}

/** A process a killed supervisor left running: its pid file and a word its command line holds. */
export interface Leftover {
  name: string;
  pidFile: string;
  commandIncludes: string;
}

/**
 * One supervisor per data directory: a second one would fight over ports and files. Servers left
 * behind by a supervisor that was killed outright are stopped first.
 */
export async function claimDataDir(command: string, runDir: string, leftovers: Leftover[]): Promise<void> {
  const supervisorPid = readPid(join(runDir, 'supervisor.pid'));
  if (supervisorPid && supervisorPid !== process.pid && isAlive(supervisorPid)) {
    throw new Error(
      `another espresso ${command} (pid ${supervisorPid}) is using this data directory; stop it first`,
    );
  }
  for (const leftover of leftovers) {
    const pid = readPid(leftover.pidFile);
    if (!pid || !isAlive(pid) || !commandLine(pid).includes(leftover.commandIncludes)) continue;
    say(`stopping a ${leftover.name} (pid ${pid}) left over from an earlier run`);
    process.kill(pid, 'SIGTERM');
    for (let i = 0; i < 100 && isAlive(pid); i++) await sleep(200);
    if (isAlive(pid)) process.kill(pid, 'SIGKILL');
  }
  await writeFile(join(runDir, 'supervisor.pid'), String(process.pid));
}

export function readPid(file: string): number | undefined {
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

export function splitAddress(address: string): [string, number] {
  const i = address.lastIndexOf(':');
  return [address.slice(0, i), Number(address.slice(i + 1))];
}

export function displayHost(host: string): string {
  return host === '0.0.0.0' || host === '127.0.0.1' ? 'localhost' : host;
}

export async function assertPortFree(host: string, port: number, setting: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const probe = createServer();
    probe.once('error', (err: NodeJS.ErrnoException) =>
      reject(
        new Error(
          err.code === 'EADDRINUSE'
            ? `port ${port} on ${host} is already in use (another espresso or Temporal?); stop it or change ${setting}`
            : `cannot listen on ${host}:${port} (${err.code}); check ${setting}`,
        ),
      ),
    );
    probe.listen(port, host, () => probe.close(() => resolve()));
  });
}

export async function waitForHttp(url: string, timeoutMs: number): Promise<void> {
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
