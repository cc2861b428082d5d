import { strict as assert } from 'node:assert';
import { join } from 'node:path';
import { ConfigError, loadConfig } from '../src/config';
import { projectRoot } from '../src/paths';

describe('configuration from the environment', () => {
  it('defaults to the embedded stack under .espresso/', () => {
    const config = loadConfig({});
    assert.equal(config.storage.kind, 'local');
    assert.equal(config.dataDir, join(projectRoot, '.espresso'));
    assert.equal(config.temporal.address, '127.0.0.1:7233');
    assert.equal(config.temporal.uiUrl, 'http://localhost:8233');
    assert.equal(config.web.port, 3000);
  });

  it('switches to S3 + Secrets Manager with ESPRESSO_STORAGE=aws', () => {
    const config = loadConfig({
      ESPRESSO_STORAGE: 'aws',
      ESPRESSO_S3_BUCKET: 'my-bucket',
      ESPRESSO_AWS_ENDPOINT: 'http://127.0.0.1:5000',
    });
    assert.deepEqual(config.storage, {
      kind: 'aws',
      bucket: 'my-bucket',
      region: 'us-east-1',
      endpoint: 'http://127.0.0.1:5000',
      secretPrefix: 'espresso/',
    });
  });

  const bad: Array<[Record<string, string>, RegExp]> = [
    [{ ESPRESSO_WEB_PORT: 'eighty' }, /ESPRESSO_WEB_PORT/],
    [{ ESPRESSO_WEB_PORT: '70000' }, /ESPRESSO_WEB_PORT/],
    [{ ESPRESSO_STORAGE: 's3' }, /ESPRESSO_STORAGE/],
    [{ ESPRESSO_STORAGE: 'aws' }, /ESPRESSO_S3_BUCKET: required/],
    [{ TEMPORAL_ADDRESS: 'localhost' }, /TEMPORAL_ADDRESS: expected host:port/],
    [{ ESPRESSO_SECRET_KEY: 'c2hvcnQ=' }, /ESPRESSO_SECRET_KEY: must be 32 bytes/],
    [{ ESPRESSO_TEMPORAL_EMBEDDED: 'maybe' }, /ESPRESSO_TEMPORAL_EMBEDDED/],
    [{ ESPRESSO_AWS_ENDPOINT: 'ftp://x' }, /ESPRESSO_AWS_ENDPOINT/],
    [{ ESPRESSO_TRUST_PROXY: 'yes please' }, /ESPRESSO_TRUST_PROXY: "yes please" is not a hop count/],
  ];
  for (const [env, message] of bad) {
    it(`names the variable when ${JSON.stringify(env)} is wrong`, () => {
      assert.throws(
        () => loadConfig(env),
        (err: unknown) => err instanceof ConfigError && message.test(err.message),
      );
    });
  }

  it('README: the daily run time and concurrency, and the Sandbox demo list size, from the environment', () => {
    const defaults = loadConfig({});
    // Without ESPRESSO_DAILY_CONCURRENCY the schedule hands the daily run none: its default (50).
    assert.deepEqual(defaults.schedule, { hour: 6, minute: 0, dailyConcurrency: undefined });
    assert.equal(defaults.sandbox.seedContacts, 1000);
    const set = loadConfig({
      ESPRESSO_SCHEDULE_TIME: '23:45',
      ESPRESSO_DAILY_CONCURRENCY: '120',
      ESPRESSO_SANDBOX_SEED_CONTACTS: '25',
    });
    assert.deepEqual(set.schedule, { hour: 23, minute: 45, dailyConcurrency: 120 });
    assert.equal(set.sandbox.seedContacts, 25);
  });

  it('treats empty values as unset', () => {
    assert.equal(loadConfig({ ESPRESSO_WEB_PORT: '' }).web.port, 3000);
  });

  it('trusts no proxy unless told: a hop count or addresses', () => {
    assert.equal(loadConfig({}).web.trustProxy, false);
    assert.equal(loadConfig({ ESPRESSO_TRUST_PROXY: '1' }).web.trustProxy, 1);
    assert.equal(
      loadConfig({ ESPRESSO_TRUST_PROXY: 'loopback, 10.0.0.0/8' }).web.trustProxy,
      'loopback, 10.0.0.0/8',
    );
  });

  it('stops the process at start with the variable named (entry point)', async () => {
    const { spawnSync } = await import('node:child_process');
    const out = spawnSync(process.execPath, [join(projectRoot, 'dist/src/cli/main.js'), 'start'], {
      env: { ...process.env, ESPRESSO_WEB_PORT: 'not-a-port' },
      encoding: 'utf8',
      timeout: 20_000,
    });
    assert.equal(out.status, 2);
    assert.match(out.stderr, /ESPRESSO_WEB_PORT/);
  });
});
