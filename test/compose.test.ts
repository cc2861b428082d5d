// No Docker engine runs here, so the production-like stack is checked against the code instead.
import { strict as assert } from 'node:assert';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { CLUSTER_DEFAULTS } from '../src/cluster';
import { DB_USER } from '../src/cluster/postgres';
import {
  DATABASES,
  NAMESPACE_RETENTION_DAYS,
  SQL_PLUGIN,
  TEMPORAL_SERVER_VERSION,
  writeServerConfig,
} from '../src/cluster/temporal-server';
import { TEMPORAL_UI_VERSION } from '../src/cluster/web-ui';
import { envSchema } from '../src/config';
import { projectRoot } from '../src/paths';
import { WORKER_ENV, WORKER_NODE_FLAGS } from '../src/worker/node-options';
import { tempDir } from './support/tmp';

interface Service {
  image?: string;
  build?: string | { context: string; dockerfile?: string };
  command?: string[];
  environment?: Record<string, string>;
  ports?: string[];
  profiles?: string[];
  volumes?: string[];
  depends_on?: Record<string, unknown> | string[];
  stop_grace_period?: string;
}

const compose = parse(readFileSync(join(projectRoot, 'docker-compose.yml'), 'utf8'), { merge: true }) as {
  services: Record<string, Service>;
};
const services = compose.services;
const ownServices = Object.entries(services).filter(([, s]) => s.build);
/** Read by the AWS SDK or by glibc itself, not by espresso's config module. */
const notConfigVariables = new Set([
  'AWS_ACCESS_KEY_ID',
  'AWS_SECRET_ACCESS_KEY',
  'AWS_SESSION_TOKEN',
  ...Object.keys(WORKER_ENV),
]);

describe('docker-compose.yml and Dockerfile', () => {
  it('has Temporal on PostgreSQL, the Web UI, an AWS emulator, worker and web', () => {
    for (const name of ['postgresql', 'temporal', 'temporal-ui', 'aws', 'worker', 'web']) {
      assert.ok(services[name], `service ${name} missing`);
    }
    // Its dynamic configuration (eager activity execution) is the file the service mounts.
    const settings = parse(readFileSync(join(projectRoot, dynamicConfigMount()), 'utf8')) as Record<
      string,
      Array<{ value: unknown }>
    >;
    assert.equal(settings['system.enableActivityEagerExecution']![0]!.value, true);
    assert.deepEqual(
      ownServices.map(([name]) => name),
      ['worker', 'web'],
    );
  });

  it('builds worker and web from a Debian-based Dockerfile that exists', () => {
    for (const [name, service] of ownServices) {
      const context = typeof service.build === 'string' ? service.build : service.build!.context;
      const dockerfile = join(
        projectRoot,
        context,
        typeof service.build === 'object' ? (service.build.dockerfile ?? 'Dockerfile') : 'Dockerfile',
      );
      assert.ok(existsSync(dockerfile), `${name}: ${dockerfile} missing`);
      const froms = readFileSync(dockerfile, 'utf8').match(/^FROM\s+\S+/gm) ?? [];
      assert.ok(froms.length > 0);
      for (const from of froms) assert.match(from, /bookworm|bullseye|trixie/, `${from} is not Debian-based`);
      for (const from of froms) assert.doesNotMatch(from, /alpine/);
    }
  });

  it('runs entry points that the build produces from existing sources', () => {
    for (const [name, service] of ownServices) {
      const command = service.command ?? [];
      assert.equal(command[0], 'node', name);
      const script = command.at(-1);
      const source = script!.replace(/^dist\//, '').replace(/\.js$/, '.ts');
      assert.ok(
        existsSync(join(projectRoot, source)),
        `${name} runs ${script}, but ${source} does not exist`,
      );
    }
    assert.ok(existsSync(join(projectRoot, 'src/cli/main.ts')), 'package bin source');
  });

  it('runs the worker with the heap cap and malloc arenas that `espresso start` gives it', () => {
    const worker = services.worker!;
    assert.deepEqual(worker.command, ['node', ...WORKER_NODE_FLAGS, 'dist/src/worker/main.js']);
    for (const [key, value] of Object.entries(WORKER_ENV)) assert.equal(worker.environment![key], value, key);
  });

  it("runs the image's own command as the worker, with the same heap cap and malloc arenas", () => {
    const dockerfile = readFileSync(join(projectRoot, 'Dockerfile'), 'utf8');
    // The last stage is the image: its CMD and ENV lines.
    const image = dockerfile.slice(dockerfile.lastIndexOf('\nFROM '));
    const cmd = image.match(/^CMD\s+(\[.*\])\s*$/m);
    assert.ok(cmd, 'the image has no CMD in exec form');
    assert.deepEqual(JSON.parse(cmd[1]!), ['node', ...WORKER_NODE_FLAGS, 'dist/src/worker/main.js']);
    const env = Object.fromEntries(
      [...image.matchAll(/^ENV\s+(\w+)=(\S+)\s*$/gm)].map((m) => [m[1]!, m[2]!]),
    );
    for (const [key, value] of Object.entries(WORKER_ENV)) assert.equal(env[key], value, key);
  });

  it('sets only variables the config module declares, with values it accepts', () => {
    const declared = new Set(Object.keys(envSchema.shape));
    for (const [name, service] of ownServices) {
      const env = service.environment ?? {};
      const ours = Object.fromEntries(Object.entries(env).filter(([k]) => !notConfigVariables.has(k)));
      for (const key of Object.keys(ours))
        assert.ok(declared.has(key), `${name} sets unknown variable ${key}`);
      const parsed = envSchema.safeParse(ours);
      assert.ok(parsed.success, `${name}: ${parsed.error?.message}`);
    }
  });

  it('publishes only the web server by default, on 127.0.0.1; credentials come from the environment', () => {
    // `docker compose up` starts every service without a profile: of those, only web has ports.
    const byDefault = Object.entries(services).filter(([, s]) => !s.profiles?.length);
    assert.deepEqual(
      byDefault.filter(([, s]) => s.ports?.length).map(([name]) => name),
      ['web'],
    );
    // The Web UI (no sign-in of its own) only when asked for: `docker compose --profile ui up`.
    assert.deepEqual(services['temporal-ui']!.profiles, ['ui']);
    const published = Object.entries(services).filter(([, s]) => s.ports?.length);
    for (const [name, s] of published)
      for (const p of s.ports!) assert.match(p, /^127\.0\.0\.1:\d+:\d+$/, `${name} publishes ${p}`);
    // No working default for the database password: compose refuses to start without it.
    assert.equal(
      services.postgresql!.environment!.POSTGRES_PASSWORD,
      '${TEMPORAL_DB_PASSWORD:?set TEMPORAL_DB_PASSWORD}',
    );
    assert.equal(
      services.temporal!.environment!.POSTGRES_PWD,
      services.postgresql!.environment!.POSTGRES_PASSWORD,
    );
    assert.equal(
      services['temporal-schema']!.environment!.SQL_PASSWORD,
      services.postgresql!.environment!.POSTGRES_PASSWORD,
    );
    assert.match(services.web!.environment!.ESPRESSO_SESSION_SECRET!, /^\$\{ESPRESSO_SESSION_SECRET:\?/);
    assert.equal(services.web!.environment!.ESPRESSO_ADMIN_PASSWORD, '${ESPRESSO_ADMIN_PASSWORD:-}');
  });

  it('points worker and web at services that exist, and publishes the web port', () => {
    for (const [name, service] of ownServices) {
      const env = service.environment!;
      const temporalHost = env.TEMPORAL_ADDRESS!.split(':')[0]!;
      assert.ok(services[temporalHost], `${name}: TEMPORAL_ADDRESS names no service`);
      const awsHost = new URL(env.ESPRESSO_AWS_ENDPOINT!).hostname;
      assert.ok(services[awsHost], `${name}: ESPRESSO_AWS_ENDPOINT names no service`);
    }
    const web = services.web!;
    assert.ok(
      web.ports!.includes(
        `127.0.0.1:${web.environment!.ESPRESSO_WEB_PORT}:${web.environment!.ESPRESSO_WEB_PORT}`,
      ),
    );
    assert.equal(web.environment!.ESPRESSO_WEB_HOST, '0.0.0.0');
  });

  it('gives the worker longer to stop than its own shutdown grace, so a deploy drains instead of killing', () => {
    const worker = services.worker!;
    const grace = envSchema.parse(worker.environment).ESPRESSO_SHUTDOWN_GRACE_MS;
    const stop = /^(\d+)s$/.exec(worker.stop_grace_period ?? '');
    assert.ok(stop, `worker stop_grace_period ${worker.stop_grace_period} (expected e.g. 30s)`);
    assert.ok(
      Number(stop[1]) * 1000 >= grace + 10_000,
      `${worker.stop_grace_period} leaves no time past ${grace} ms`,
    );
  });
});

/** The project file the temporal service mounts as its dynamic configuration. */
function dynamicConfigMount(): string {
  const dynamic = services.temporal!.environment!.DYNAMIC_CONFIG_FILE_PATH!;
  const mount = services.temporal!.volumes!.find((v) => v.split(':')[1] === dynamic);
  assert.ok(mount, `no volume mounts ${dynamic}`);
  return mount.split(':')[0]!;
}

describe('docker-compose.yml runs what `npm run cluster` runs', () => {
  it('uses the same releases: Temporal server and tools, Web UI, moto', () => {
    assert.equal(services.temporal!.image, `temporalio/server:${TEMPORAL_SERVER_VERSION}`);
    for (const tool of ['temporal-schema', 'temporal-namespace']) {
      assert.equal(services[tool]!.image, `temporalio/admin-tools:${TEMPORAL_SERVER_VERSION}`, tool);
    }
    assert.equal(services['temporal-ui']!.image, `temporalio/ui:${TEMPORAL_UI_VERSION}`);
    // The cluster's moto is the one tools/requirements.txt pins into .tools/venv.
    const moto = /^moto\[server\]==(\S+)$/m.exec(
      readFileSync(join(projectRoot, 'tools/requirements.txt'), 'utf8'),
    );
    assert.equal(services.aws!.image, `motoserver/moto:${moto?.[1]}`);
  });

  it("gives the Temporal server the cluster's settings: databases, shards, pools, dynamic configuration", async () => {
    const file = join(await tempDir(), 'temporal.yaml');
    await writeServerConfig(file, {
      ip: '127.0.0.1',
      frontendPort: 7233,
      db: { port: CLUSTER_DEFAULTS.postgresPort, user: DB_USER, password: 'unused' },
    });
    const cluster = parse(readFileSync(file, 'utf8')) as {
      persistence: {
        numHistoryShards: number;
        defaultStore: string;
        visibilityStore: string;
        datastores: Record<
          string,
          {
            sql: {
              pluginName: string;
              databaseName: string;
              user: string;
              maxConns: number;
              maxIdleConns: number;
            };
          }
        >;
      };
      dynamicConfigClient: { filepath: string };
    };
    const env = services.temporal!.environment!;
    const { persistence } = cluster;
    assert.equal(env.NUM_HISTORY_SHARDS, String(persistence.numHistoryShards));
    const [main, visibility] = [persistence.defaultStore, persistence.visibilityStore].map(
      (store) => persistence.datastores[store]!.sql,
    );
    assert.equal(env.DB, main!.pluginName);
    assert.equal(env.DB, visibility!.pluginName);
    assert.equal(env.DBNAME, main!.databaseName);
    assert.equal(env.VISIBILITY_DBNAME, visibility!.databaseName);
    assert.deepEqual(
      [env.SQL_MAX_CONNS, env.SQL_MAX_IDLE_CONNS, env.SQL_VIS_MAX_CONNS, env.SQL_VIS_MAX_IDLE_CONNS],
      [main!.maxConns, main!.maxIdleConns, visibility!.maxConns, visibility!.maxIdleConns].map(String),
    );
    for (const user of [env.POSTGRES_USER, services.postgresql!.environment!.POSTGRES_USER]) {
      assert.equal(user, main!.user);
    }
    assert.equal(cluster.dynamicConfigClient.filepath, join(projectRoot, dynamicConfigMount()));
  });

  it('sets up the same databases and schemas, and the namespace with the same retention', () => {
    const schema = services['temporal-schema']!;
    assert.equal(schema.environment!.SQL_PLUGIN, SQL_PLUGIN);
    assert.equal(schema.environment!.SQL_USER, DB_USER);
    const script = schema.command!.join('\n');
    // The loop over database:schema pairs, and the versioned folders the cluster's SQL tool reads.
    assert.match(script, new RegExp(`for db in ${DATABASES.map((d) => `${d.name}:${d.schema}`).join(' ')};`));
    assert.match(script, /\/schema\/postgresql\/v12\/\$\$schema\/versioned/);
    const namespace = services['temporal-namespace']!.command!.join(' ');
    assert.match(namespace, new RegExp(`--retention ${NAMESPACE_RETENTION_DAYS}d `));
  });

  it("uses the cluster's ports and bucket: Temporal frontend, Web UI, web, moto", () => {
    const defaults = envSchema.parse({});
    for (const [name, service] of ownServices) {
      const env = service.environment!;
      assert.equal(env.TEMPORAL_ADDRESS!.split(':')[1], defaults.TEMPORAL_ADDRESS.split(':')[1], name);
      assert.equal(new URL(env.ESPRESSO_AWS_ENDPOINT!).port, String(CLUSTER_DEFAULTS.motoPort), name);
      assert.equal(env.ESPRESSO_S3_BUCKET, CLUSTER_DEFAULTS.bucket, name);
    }
    assert.equal(
      services['aws-setup']!.command!.at(-1),
      `http://aws:${CLUSTER_DEFAULTS.motoPort}/${CLUSTER_DEFAULTS.bucket}`,
    );
    // The UI image serves on 8080 inside; published where the cluster's UI listens.
    assert.deepEqual(services['temporal-ui']!.ports, [
      `127.0.0.1:${defaults.ESPRESSO_TEMPORAL_UI_PORT}:8080`,
    ]);
    assert.ok(services.web!.ports!.includes(`127.0.0.1:${defaults.ESPRESSO_WEB_PORT}:3000`));
  });
});

describe('.env.example', () => {
  it('lists every variable the config module reads, and no other', () => {
    const listed = readFileSync(join(projectRoot, '.env.example'), 'utf8')
      .split('\n')
      .filter((line) => /^[A-Z0-9_]+=/.test(line))
      .map((line) => line.split('=')[0]);
    assert.deepEqual([...listed].sort(), Object.keys(envSchema.shape).sort());
  });

  it('holds defaults the config module accepts', () => {
    const values = Object.fromEntries(
      readFileSync(join(projectRoot, '.env.example'), 'utf8')
        .split('\n')
        .filter((line) => /^[A-Z0-9_]+=./.test(line))
        .map((line) => line.split('=') as [string, string]),
    );
    assert.ok(envSchema.safeParse(values).success);
  });
});
