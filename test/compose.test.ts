// No Docker engine runs here, so the production-like stack is checked against the code instead.
import { strict as assert } from 'node:assert';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { TEMPORAL_SERVER_VERSION } from '../src/cluster/temporal-server';
import { envSchema } from '../src/config';
import { projectRoot } from '../src/paths';

interface Service {
  image?: string;
  build?: string | { context: string; dockerfile?: string };
  command?: string[];
  environment?: Record<string, string>;
  ports?: string[];
  volumes?: string[];
  depends_on?: Record<string, unknown> | string[];
  stop_grace_period?: string;
}

const compose = parse(readFileSync(join(projectRoot, 'docker-compose.yml'), 'utf8'), { merge: true }) as {
  services: Record<string, Service>;
};
const services = compose.services;
const ownServices = Object.entries(services).filter(([, s]) => s.build);
/** Read by the AWS SDK itself, not by espresso's config module. */
const awsSdkVariables = new Set(['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN']);

describe('docker-compose.yml and Dockerfile', () => {
  it('has Temporal on PostgreSQL, the Web UI, an AWS emulator, worker and web', () => {
    for (const name of ['postgresql', 'temporal', 'temporal-ui', 'aws', 'worker', 'web']) {
      assert.ok(services[name], `service ${name} missing`);
    }
    // The Temporal version `npm run cluster` builds, for the server and the schema and namespace tools.
    assert.equal(services.temporal!.image, `temporalio/server:${TEMPORAL_SERVER_VERSION}`);
    for (const tool of ['temporal-schema', 'temporal-namespace']) {
      assert.equal(services[tool]!.image, `temporalio/admin-tools:${TEMPORAL_SERVER_VERSION}`, tool);
    }
    assert.equal(services.temporal!.environment!.DB, 'postgres12');
    assert.equal(services['temporal-schema']!.environment!.SQL_PLUGIN, 'postgres12');
    // Its dynamic configuration (eager activity execution) is the file the service mounts.
    const dynamic = services.temporal!.environment!.DYNAMIC_CONFIG_FILE_PATH!;
    const mount = services.temporal!.volumes!.find((v) => v.split(':')[1] === dynamic)!;
    assert.ok(mount, `no volume mounts ${dynamic}`);
    const settings = parse(readFileSync(join(projectRoot, mount.split(':')[0]!), 'utf8')) as Record<
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

  it('sets only variables the config module declares, with values it accepts', () => {
    const declared = new Set(Object.keys(envSchema.shape));
    for (const [name, service] of ownServices) {
      const env = service.environment ?? {};
      const ours = Object.fromEntries(Object.entries(env).filter(([k]) => !awsSdkVariables.has(k)));
      for (const key of Object.keys(ours))
        assert.ok(declared.has(key), `${name} sets unknown variable ${key}`);
      const parsed = envSchema.safeParse(ours);
      assert.ok(parsed.success, `${name}: ${parsed.error?.message}`);
    }
  });

  it('publishes only the web server and the Web UI, on 127.0.0.1; credentials come from the environment', () => {
    const published = Object.entries(services).filter(([, s]) => s.ports?.length);
    assert.deepEqual(published.map(([name]) => name).sort(), ['temporal-ui', 'web']);
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
