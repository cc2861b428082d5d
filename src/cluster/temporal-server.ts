// The self-hosted Temporal server of `espresso cluster`: built once from the Go module proxy into
// .tools/, its PostgreSQL schemas set up with Temporal's SQL tool, its configuration written from
// the ports and database at hand.
import { spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Connection } from '@temporalio/client';
import { msToTs } from '@temporalio/common/lib/time';
import { freePort } from '../lib/free-port';
import { assertPortFree, say } from '../lib/supervise';
import { projectRoot } from '../paths';
import { registerSearchAttributes } from '../temporal/search-attributes';

/** The server inside the pinned Temporal CLI's dev server (tools/requirements.txt), and docker-compose.yml's. */
export const TEMPORAL_SERVER_VERSION = '1.32.0';
const MODULE = 'go.temporal.io/server';
const toolsDir = join(projectRoot, '.tools', `temporal-server-${TEMPORAL_SERVER_VERSION}`);
export const temporalServerBin = join(toolsDir, 'server');
const sqlToolBin = join(toolsDir, 'sql');
/** Where Go's build reported its module cache, so the schema files can be found without Go. */
const moduleDirFile = join(toolsDir, 'module-dir');

/** Builds the server and the SQL tool unless they are there already. */
export function provisionTemporalServer(): void {
  if ([temporalServerBin, sqlToolBin, moduleDirFile].every(existsSync)) return;
  const go = findGo();
  say(
    `building Temporal server v${TEMPORAL_SERVER_VERSION} and its SQL tool with ${go} into ${toolsDir} ` +
      '(once; a few minutes on a fresh machine)',
  );
  for (const pkg of ['cmd/server', 'cmd/tools/sql'])
    goInstall(go, `${MODULE}/${pkg}@v${TEMPORAL_SERVER_VERSION}`, toolsDir);
  const modCache = spawnSync(go, ['env', 'GOMODCACHE'], { encoding: 'utf8' }).stdout.trim();
  const moduleDir = join(modCache, `${MODULE}@v${TEMPORAL_SERVER_VERSION}`);
  if (!existsSync(join(moduleDir, 'schema'))) throw new Error(`no schema folder in ${moduleDir}`);
  writeFileSync(moduleDirFile, moduleDir);
}

/** `go install <pkg>@<version>` into `bin`, with the machine's own Go (no toolchain download). */
export function goInstall(go: string, pkgAtVersion: string, bin: string): void {
  const built = spawnSync(go, ['install', pkgAtVersion], {
    // Its output on stderr: stdout is for what the command that provisions prints (JSON).
    stdio: ['inherit', 2, 2],
    env: { ...process.env, GOBIN: bin, GOTOOLCHAIN: 'local' },
  });
  if (built.status !== 0) throw new Error(`go install ${pkgAtVersion} failed (see above)`);
}

/** `go` on PATH, else where the official tarball installs it. */
export function findGo(path = process.env.PATH ?? '', tarballGo = '/usr/local/go/bin/go'): string {
  const candidates = [
    ...path
      .split(':')
      .filter(Boolean)
      .map((dir) => join(dir, 'go')),
    tarballGo,
  ];
  const go = candidates.find((path) => {
    try {
      accessSync(path, constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
  if (!go) {
    throw new Error(
      `building the Temporal server v${TEMPORAL_SERVER_VERSION} needs Go (1.26 or newer), which is neither on PATH ` +
        `nor at ${tarballGo}: install it from https://go.dev/dl/ (it fetches the server from the Go module proxy)`,
    );
  }
  return go;
}

export interface Database {
  port: number;
  user: string;
  password: string;
}

/** Settings docker-compose.yml repeats (test/compose.test.ts compares them). */
export const SQL_PLUGIN = 'postgres12';
/** Fixed when the database is created: changing it later needs a new database. */
export const NUM_HISTORY_SHARDS = 4;
export const NAMESPACE_RETENTION_DAYS = 7;
/** The default store and the visibility store: database, schema folder, connection pool size. */
export const DATABASES = [
  { name: 'temporal', schema: 'temporal', maxConns: 20 },
  { name: 'temporal_visibility', schema: 'visibility', maxConns: 4 },
] as const;

/**
 * Creates the two databases and brings their schemas to this server version: create-database,
 * setup-schema -v 0.0 (the version table), update-schema from the module's versioned folder.
 * Each step is a no-op when already done, so it runs at every start and upgrades after a pin bump.
 */
export function setUpSchemas(db: Database, stampFile: string): void {
  if (existsSync(stampFile) && readFileSync(stampFile, 'utf8') === TEMPORAL_SERVER_VERSION) return;
  const moduleDir = readFileSync(moduleDirFile, 'utf8').trim();
  for (const { name, schema } of DATABASES) {
    say(`setting up Temporal's ${name} database (schema of v${TEMPORAL_SERVER_VERSION})`);
    const base = [
      '--ep',
      '127.0.0.1',
      '-p',
      String(db.port),
      '-u',
      db.user,
      '--pl',
      SQL_PLUGIN,
      '--db',
      name,
    ];
    const env = { ...process.env, SQL_PASSWORD: db.password };
    const created = runSqlTool([...base, 'create-database', '--defaultdb', 'postgres'], env);
    if (created.status !== 0 && !/already exists/.test(created.output)) {
      throw new Error(`temporal sql tool create-database ${name} failed:\n${created.output}`);
    }
    for (const args of [
      ['setup-schema', '-v', '0.0'],
      ['update-schema', '-d', join(moduleDir, 'schema', 'postgresql', 'v12', schema, 'versioned')],
    ]) {
      const step = runSqlTool([...base, ...args], env);
      if (step.status !== 0) throw new Error(`temporal sql tool ${args[0]} ${name} failed:\n${step.output}`);
    }
  }
  writeFileSync(stampFile, TEMPORAL_SERVER_VERSION);
}

function runSqlTool(args: string[], env: NodeJS.ProcessEnv): { status: number | null; output: string } {
  const out = spawnSync(sqlToolBin, args, { encoding: 'utf8', env });
  return { status: out.status, output: `${out.stdout ?? ''}${out.stderr ?? ''}` };
}

/** Every port one server process listens on, from the frontend's (Temporal's usual spacing). */
export function temporalPorts(frontend: number) {
  const services = { frontend, history: frontend + 1, matching: frontend + 2, worker: frontend + 6 };
  return Object.fromEntries(
    Object.entries(services).map(([name, grpc]) => [name, { grpc, membership: grpc - 300 }]),
  ) as Record<keyof typeof services, { grpc: number; membership: number }>;
}

/** A free frontend port whose whole family (the other services, the membership ports) is free too (tests, benchmark). */
export async function freeTemporalPort(): Promise<number> {
  for (;;) {
    const port = await freePort();
    const all = Object.values(temporalPorts(port)).flatMap((p) => [p.grpc, p.membership]);
    const free = await Promise.all(
      all.map((p) =>
        assertPortFree('127.0.0.1', p, 'the Temporal frontend port').then(
          () => true,
          () => false,
        ),
      ),
    );
    if (free.every(Boolean)) return port;
  }
}

/**
 * A free port outside the port family of the Temporal server whose frontend is `frontend`, and not
 * in `taken` (which it joins). A port that is merely free may be one the server takes as it starts:
 * the cluster test once had its web port taken by the matching service.
 */
export async function freePortBeside(frontend: number, taken = new Set<number>()): Promise<number> {
  const family = new Set(Object.values(temporalPorts(frontend)).flatMap((p) => [p.grpc, p.membership]));
  for (;;) {
    const port = await freePort();
    if (family.has(port) || taken.has(port)) continue;
    taken.add(port);
    return port;
  }
}

export async function writeServerConfig(
  file: string,
  options: { ip: string; frontendPort: number; db: Database },
): Promise<void> {
  const { ip, db } = options;
  const datastore = (name: string, maxConns: number) => [
    `    ${name}:`,
    '      sql:',
    `        pluginName: ${SQL_PLUGIN}`,
    `        databaseName: ${name}`,
    `        connectAddr: "127.0.0.1:${db.port}"`,
    '        connectProtocol: tcp',
    `        user: ${db.user}`,
    `        password: ${JSON.stringify(db.password)}`,
    `        maxConns: ${maxConns}`,
    `        maxIdleConns: ${maxConns}`,
    '        maxConnLifetime: 1h',
  ];
  const services = Object.entries(temporalPorts(options.frontendPort)).flatMap(([name, ports]) => [
    `  ${name}:`,
    '    rpc:',
    `      grpcPort: ${ports.grpc}`,
    `      membershipPort: ${ports.membership}`,
    `      bindOnIP: ${ip}`,
  ]);
  const lines = [
    `# Written by \`espresso cluster\` at every start (Temporal server v${TEMPORAL_SERVER_VERSION}); edits are lost.`,
    'log:',
    '  stdout: true',
    '  level: warn',
    'persistence:',
    '  defaultStore: temporal',
    '  visibilityStore: temporal_visibility',
    `  numHistoryShards: ${NUM_HISTORY_SHARDS}`,
    '  datastores:',
    ...DATABASES.flatMap(({ name, maxConns }) => datastore(name, maxConns)),
    'global:',
    '  membership:',
    '    maxJoinDuration: 30s',
    `    broadcastAddress: ${ip}`,
    'services:',
    ...services,
    'clusterMetadata:',
    '  enableGlobalNamespace: false',
    '  failoverVersionIncrement: 10',
    '  masterClusterName: active',
    '  currentClusterName: active',
    '  clusterInformation:',
    '    active:',
    '      enabled: true',
    '      initialFailoverVersion: 1',
    '      rpcName: frontend',
    `      rpcAddress: "${ip}:${options.frontendPort}"`,
    'dcRedirectionPolicy:',
    '  policy: noop',
    'dynamicConfigClient:',
    // The file docker-compose.yml mounts too: both clusters run with the same settings.
    `  filepath: ${JSON.stringify(join(projectRoot, 'deploy', 'temporal', 'dynamicconfig.yaml'))}`,
    '  pollInterval: 10s',
  ];
  await writeFile(file, `${lines.join('\n')}\n`);
}

export function serverArgs(configFile: string): string[] {
  return ['--config-file', configFile, '--allow-no-auth', 'start'];
}

/**
 * Registers the namespace (retention NAMESPACE_RETENTION_DAYS) and espresso's search attributes, idempotently. A
 * new namespace reaches every service's cache only after a few seconds: retried until then.
 */
export async function prepareNamespace(
  address: string,
  namespace: string,
  timeoutMs = 90_000,
): Promise<void> {
  const connection = await Connection.connect({ address });
  try {
    const deadline = Date.now() + timeoutMs;
    try {
      await connection.workflowService.registerNamespace({
        namespace,
        workflowExecutionRetentionPeriod: msToTs(`${NAMESPACE_RETENTION_DAYS} days`),
      });
      say(`registered namespace ${namespace}`);
    } catch (err) {
      if (!/already exists|already registered/i.test((err as Error).message)) throw err;
    }
    for (;;) {
      try {
        const added = await registerSearchAttributes(connection.operatorService, namespace);
        if (added.length) say(`registered search attributes ${added.join(', ')}`);
        return;
      } catch (err) {
        if (Date.now() > deadline) {
          throw new Error(`search attributes not registered in ${namespace}: ${(err as Error).message}`);
        }
        await sleep(1_000);
      }
    }
  } finally {
    await connection.close();
  }
}
