// The PostgreSQL server of `espresso cluster`: Debian's binaries (installed when missing), its own
// data folder under the data directory, listening on 127.0.0.1 only, with a generated password.
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, readdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { loadOrCreateKeyFile } from '../lib/key-file';
import { isExecutable } from '../tools';
import { say, type ProcessSpec } from '../lib/supervise';
import type { Database } from './temporal-server';

/** PostgreSQL refuses to run as root: as root, the cluster runs it as Debian's `postgres` user. */
const SERVICE_USER = 'postgres';
export const DB_USER = 'temporal';

export interface Postgres {
  bin: string;
  dataDir: string;
  db: Database;
  /** The user the server runs as, when the supervisor is root. */
  user?: { uid: number; gid: number };
}

/** PostgreSQL's binaries folder: Debian's package, installed first when missing (as root). */
export function provisionPostgres(): string {
  return findPostgresBin() ?? installPostgres();
}

/** Finds (or, as root, installs) PostgreSQL and creates its data folder on first use. */
export async function preparePostgres(clusterDir: string, port: number): Promise<Postgres> {
  const bin = provisionPostgres();
  const user = process.getuid?.() === 0 ? serviceUser() : undefined;
  const dataDir = join(clusterDir, 'postgresql');
  const password = await loadOrCreateKeyFile(join(clusterDir, 'postgres.password'));
  const postgres: Postgres = { bin, dataDir, user, db: { port, user: DB_USER, password } };
  if (!existsSync(join(dataDir, 'PG_VERSION'))) await initDataDir(postgres, clusterDir);
  return postgres;
}

function findPostgresBin(): string | undefined {
  // Through symlinks (e.g. /usr/local/bin/initdb): pg_isready sits beside the real one.
  const onPath = (process.env.PATH ?? '').split(':').find((dir) => isExecutable(join(dir, 'initdb')));
  if (onPath) return dirname(realpathSync(join(onPath, 'initdb')));
  const debian = '/usr/lib/postgresql';
  if (!existsSync(debian)) return undefined;
  const newest = readdirSync(debian)
    .filter((v) => isExecutable(join(debian, v, 'bin', 'initdb')))
    .sort((a, b) => Number(b) - Number(a))[0];
  return newest ? join(debian, newest, 'bin') : undefined;
}

function installPostgres(): string {
  if (process.getuid?.() !== 0) {
    throw new Error(
      "PostgreSQL not found (no initdb on PATH nor under /usr/lib/postgresql): install Debian's package (sudo apt-get install postgresql) and start again",
    );
  }
  say("PostgreSQL not found: installing Debian's postgresql package (apt-get)");
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  for (const args of [['update'], ['install', '-y', '--no-install-recommends', 'postgresql']]) {
    const out = spawnSync('apt-get', args, { stdio: ['inherit', 2, 2], env });
    if (out.status !== 0) throw new Error(`apt-get ${args.join(' ')} failed; install postgresql by hand`);
  }
  const bin = findPostgresBin();
  if (!bin)
    throw new Error('apt-get installed postgresql, but no initdb was found under /usr/lib/postgresql');
  return bin;
}

function serviceUser(): { uid: number; gid: number } {
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${SERVICE_USER}:`));
  if (!line) {
    throw new Error(
      `running as root, PostgreSQL needs the system user ${SERVICE_USER} (Debian's postgresql package creates it)`,
    );
  }
  const [, , uid, gid] = line.split(':');
  return { uid: Number(uid), gid: Number(gid) };
}

async function initDataDir(pg: Postgres, clusterDir: string): Promise<void> {
  say(`creating the PostgreSQL data folder ${pg.dataDir}`);
  await rm(pg.dataDir, { recursive: true, force: true });
  await mkdir(pg.dataDir, { recursive: true, mode: 0o700 });
  const passwordFile = join(clusterDir, 'initdb-password');
  await writeFile(passwordFile, pg.db.password);
  if (pg.user) {
    // The server's user owns its folder; the folders above it let that user pass (search only, no
    // listing), since every file espresso writes stays 0600.
    chownSync(pg.dataDir, pg.user.uid, pg.user.gid);
    chownSync(passwordFile, pg.user.uid, pg.user.gid);
    for (let dir = clusterDir; dir !== dirname(dir); dir = dirname(dir)) {
      const mode = statSync(dir).mode & 0o777;
      if ((mode & 0o001) === 0) chmodSync(dir, mode | 0o011);
    }
  }
  try {
    const out = spawnSync(
      join(pg.bin, 'initdb'),
      [
        '-D',
        pg.dataDir,
        '-U',
        pg.db.user,
        `--pwfile=${passwordFile}`,
        '-A',
        'scram-sha-256',
        '-E',
        'UTF8',
        '--no-locale',
      ],
      { encoding: 'utf8', ...(pg.user ?? {}) },
    );
    if (out.status !== 0) throw new Error(`initdb failed:\n${out.stdout}${out.stderr}`);
  } finally {
    await rm(passwordFile, { force: true });
  }
}

export function postgresProcess(pg: Postgres, logFile: string, pidFile: string): ProcessSpec {
  return {
    name: 'PostgreSQL',
    command: join(pg.bin, 'postgres'),
    // TCP on 127.0.0.1 only; no Unix socket (its default folder belongs to the system's cluster).
    args: ['-D', pg.dataDir, '-h', '127.0.0.1', '-p', String(pg.db.port), '-k', ''],
    logFile,
    pidFile,
    user: pg.user,
    // "Fast" shutdown: clients are disconnected (Temporal has stopped by then) and data is flushed.
    stopSignal: 'SIGINT',
  };
}

export async function waitForPostgres(pg: Postgres, timeoutMs: number, exited: Promise<void>): Promise<void> {
  let gone = false;
  void exited.then(() => (gone = true));
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ready = spawnSync(join(pg.bin, 'pg_isready'), ['-q', '-h', '127.0.0.1', '-p', String(pg.db.port)]);
    if (ready.status === 0) return;
    if (gone) throw new Error('PostgreSQL exited while starting');
    if (Date.now() > deadline)
      throw new Error(`PostgreSQL not ready on port ${pg.db.port} after ${timeoutMs / 1000}s`);
    await sleep(250);
  }
}
