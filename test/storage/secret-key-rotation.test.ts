// Rotating the local secret store's key as docs/operations.md ("Rotating the local secret store
// key") says: a real data directory, the real CLI for `keys rekey-secrets` and `doctor`.
import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cp, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { loadPayloadKeys } from '../../src/codec';
import { ConfigError, loadConfig } from '../../src/config';
import { saveConnection } from '../../src/connect';
import { createDeps } from '../../src/deps';
import { KeyRingError } from '../../src/lib/key-ring';
import { createLogger } from '../../src/logger';
import { projectRoot } from '../../src/paths';
import { createStores, type SecretStore } from '../../src/storage';
import { PendingFlows } from '../../src/web/pending';
import { tempDir } from '../support/tmp';

const cli = join(projectRoot, 'dist/src/cli/main.js');
const fixture = join(projectRoot, 'test/storage/fixtures/secrets-before-key-rings');
const newKey = () => randomBytes(32).toString('base64');

/** The CLI as a user runs it, with no Temporal (doctor's Temporal checks fail fast) and no Sandbox. */
async function espresso(env: Record<string, string>, args: string[]) {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [cli, ...args], {
      env: {
        PATH: process.env.PATH,
        TEMPORAL_ADDRESS: '127.0.0.1:1',
        ESPRESSO_SANDBOX_ENABLED: 'false',
        ...env,
      },
      timeout: 50_000,
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

/** Every secret's value, by id. */
async function readAll(secrets: SecretStore): Promise<Map<string, string>> {
  const all = new Map<string, string>();
  for (const id of await secrets.list()) all.set(id, await secrets.get(id));
  return all;
}

function secretsWith(env: Record<string, string>): SecretStore {
  return createStores(loadConfig(env).storage).secrets;
}

/** The key id each file of the store names: '' for files written with a single key (ESP1). */
async function fileKeys(dataDir: string): Promise<string[]> {
  const dir = join(dataDir, 'secrets');
  const names = (await readdir(dir)).filter((n) => n.endsWith('.enc') || n === '.key-check');
  return Promise.all(
    names.map(async (n) => {
      const data = await readFile(join(dir, n));
      const magic = data.subarray(0, 4).toString();
      return magic === 'ESP1' ? '' : data.subarray(5, 5 + data[4]!).toString();
    }),
  );
}

describe('rotating the local secret store key', function () {
  this.timeout(120_000);

  it('follows the documented procedure: ring new,old; rekey; new only; every secret still reads', async () => {
    const dataDir = await tempDir();
    const log = createLogger('test', 'error');
    const planted = ['sk_PLANTED_FIRST_API_KEY', 'sk_PLANTED_SECOND_API_KEY', 'sk_PLANTED_PENDING_API_KEY'];

    // Before: the generated key file (key A); secrets written as `connect`, the worker and the web flow do.
    const before = { ESPRESSO_DATA_DIR: dataDir };
    const deps = createDeps(loadConfig(before), log);
    await saveConnection(deps, {
      esp: 'klaviyo',
      credentials: { kind: 'apiKey', apiKey: planted[0]! },
      account: { accountId: 'acct_one', accountLabel: 'One', lists: [] },
    });
    await loadPayloadKeys(undefined, deps.stores.secrets, { create: true });
    await new PendingFlows(deps.stores.blobs, deps.stores.secrets).put(
      'nonce0123456789',
      { esp: 'klaviyo', binding: 'b', stage: 'choose_list', createdAt: Date.now() },
      { credentials: { kind: 'apiKey', apiKey: planted[2]! } },
    );
    const written = await readAll(deps.stores.secrets);
    assert.equal(written.size, 3);
    const keyA = (await readFile(join(dataDir, 'secret.key'), 'utf8')).trim();
    const keyB = newKey();

    // Step 1: the ring, the new key first and the old one after it. Everything reads, writes go on.
    const ring = { ESPRESSO_DATA_DIR: dataDir, ESPRESSO_SECRET_KEY: `new:${keyB},old:${keyA}` };
    const duringDeps = createDeps(loadConfig(ring), log);
    assert.deepEqual(await readAll(duringDeps.stores.secrets), written);
    const { configuration: second } = await saveConnection(duringDeps, {
      esp: 'klaviyo',
      credentials: { kind: 'apiKey', apiKey: planted[1]! },
      account: { accountId: 'acct_two', accountLabel: 'Two', lists: [] },
    });
    written.set(second.credentialsSecretId, JSON.stringify({ kind: 'apiKey', apiKey: planted[1] }));
    assert.deepEqual((await fileKeys(dataDir)).sort(), ['', '', '', '', 'new']);

    // doctor warns (and fails nothing on its account) until the secrets are re-encrypted.
    const warned = await espresso(ring, ['doctor']);
    assert.match(
      warned.stdout,
      /^warn {2}secret keys: 4 secret file\(s\) still encrypted with an older key \(the unnamed key: 4\); run `npm run espresso -- keys rekey-secrets`$/m,
    );
    assert.doesNotMatch(warned.stdout, /FAIL +secret/);

    // Step 2: rekey-secrets, then again (nothing left to do).
    const rekeyed = await espresso(ring, ['keys', 'rekey-secrets']);
    assert.equal(rekeyed.code, 0, rekeyed.stdout + rekeyed.stderr);
    assert.match(
      rekeyed.stdout,
      /re-encrypted 4 secret file\(s\) with key new, the current key of ESPRESSO_SECRET_KEY/,
    );
    assert.match(
      rekeyed.stdout,
      /no older key is needed any more: old can be removed from ESPRESSO_SECRET_KEY/,
    );
    const again = await espresso(ring, ['keys', 'rekey-secrets']);
    assert.equal(again.code, 0, again.stdout + again.stderr);
    assert.match(again.stdout, /re-encrypted 0 secret file\(s\)/);
    assert.deepEqual(await fileKeys(dataDir), ['new', 'new', 'new', 'new', 'new']);

    // Step 3: the new key alone. Every secret reads, writes work, and doctor's store check passes.
    const after = { ESPRESSO_DATA_DIR: dataDir, ESPRESSO_SECRET_KEY: `new:${keyB}` };
    const secrets = secretsWith(after);
    assert.deepEqual(await readAll(secrets), written);
    await secrets.put('credentials/cfg_later', 'later');
    assert.equal(await secrets.get('credentials/cfg_later'), 'later');
    const last = await espresso(after, ['doctor']);
    assert.match(last.stdout, /^ok {4}secret store: writable/m);
    assert.match(last.stdout, /^ok {4}secret keys: every secret is encrypted with key new/m);

    // No key and no secret in anything printed.
    for (const out of [warned, rekeyed, again, last]) {
      for (const secret of [keyA, keyB, ...planted]) {
        assert.ok(!(out.stdout + out.stderr).includes(secret), 'a key or a secret was printed');
      }
    }
  });

  it('reads a data directory written before key rings, with its single key and as the old key of a ring', async () => {
    const dataDir = await tempDir();
    await cp(fixture, dataDir, { recursive: true });
    const legacy = {
      'credentials/cfg_legacy': JSON.stringify({
        kind: 'apiKey',
        apiKey: 'fixture-api-key-written-before-key-rings',
      }),
      'pending/fixtureNonce0123': JSON.stringify({ codeVerifier: 'fixture-code-verifier' }),
    };

    // Untouched: the key file as it is; new secrets keep the format the earlier release reads.
    const single = secretsWith({ ESPRESSO_DATA_DIR: dataDir });
    assert.deepEqual(Object.fromEntries(await readAll(single)), legacy);
    await single.put('credentials/cfg_new', 'new');
    assert.deepEqual(await fileKeys(dataDir), ['', '', '', '']);
    await single.delete('credentials/cfg_new');

    // The same key as the old key of a ring: read, and re-encrypted by rekey.
    const keyA = (await readFile(join(dataDir, 'secret.key'), 'utf8')).trim();
    const ring = { ESPRESSO_DATA_DIR: dataDir, ESPRESSO_SECRET_KEY: `k2:${newKey()},k1:${keyA}` };
    assert.deepEqual(Object.fromEntries(await readAll(secretsWith(ring))), legacy);
    const rekeyed = await espresso(ring, ['keys', 'rekey-secrets']);
    assert.match(rekeyed.stdout, /re-encrypted 3 secret file\(s\) with key k2/);
    assert.deepEqual(Object.fromEntries(await readAll(secretsWith(ring))), legacy);
  });

  it('names the entry of a malformed ring and the variable, never the key material', () => {
    const key = newKey();
    // Written the wrong way round, without its padding: the key where the id belongs.
    const reversed = `${Buffer.alloc(32).toString('base64').replace(/=+$/, '')}:k1`;
    const cases: Array<[string, RegExp]> = [
      [`a:${key},${key}`, /ESPRESSO_SECRET_KEY: entry 2 must be <key id>:<base64 key>/],
      [`a:${key},b:c2hvcnQ=`, /ESPRESSO_SECRET_KEY: entry 2: the key must be 32 bytes, base64-encoded/],
      [`a:${key},${reversed}`, /ESPRESSO_SECRET_KEY: entry 2: the key must be 32 bytes/],
      [`a:${key},a:${key}`, /ESPRESSO_SECRET_KEY: entry 2 repeats the key id of an earlier entry/],
      ['c2hvcnQ=', /ESPRESSO_SECRET_KEY: must be 32 bytes, base64-encoded, or a key ring/],
    ];
    for (const [value, message] of cases) {
      assert.throws(
        () => loadConfig({ ESPRESSO_SECRET_KEY: value }),
        (err: unknown) =>
          err instanceof ConfigError &&
          message.test(err.message) &&
          [key, 'c2hvcnQ=', reversed.split(':')[0]!].every((material) => !err.message.includes(material)),
      );
    }
  });

  it('names the key file when it holds a malformed ring', async () => {
    const dataDir = await tempDir();
    await writeFile(join(dataDir, 'secret.key'), `a:${newKey()},b\n`);
    await assert.rejects(
      secretsWith({ ESPRESSO_DATA_DIR: dataDir }).put('credentials/cfg_x', 'x'),
      (err: unknown) =>
        err instanceof KeyRingError &&
        err.message.startsWith(`secret key file ${join(dataDir, 'secret.key')}: `) &&
        /: entry 2 must be/.test(err.message),
    );
  });

  it('names an unknown key id and the setting to fix; refuses a ring with no key of the store', async () => {
    const dataDir = await tempDir();
    const keyA = newKey();
    await secretsWith({ ESPRESSO_DATA_DIR: dataDir, ESPRESSO_SECRET_KEY: `a:${keyA}` }).put(
      'credentials/cfg_x',
      'x',
    );
    const other = secretsWith({ ESPRESSO_DATA_DIR: dataDir, ESPRESSO_SECRET_KEY: `b:${newKey()}` });
    await assert.rejects(other.get('credentials/cfg_x'), (err: unknown) => {
      assert.ok(err instanceof KeyRingError);
      assert.equal(
        err.message,
        'ESPRESSO_SECRET_KEY: secret credentials/cfg_x was encrypted with key a, which is not in it: add a:<its base64 key> back',
      );
      return true;
    });
    await assert.rejects(other.put('credentials/cfg_y', 'y'), /key does not match .* refusing to write/);
    const rekey = await espresso({ ESPRESSO_DATA_DIR: dataDir, ESPRESSO_SECRET_KEY: `b:${newKey()}` }, [
      'keys',
      'rekey-secrets',
    ]);
    assert.equal(rekey.code, 1);
    assert.match(rekey.stderr, /key does not match/);
    assert.ok(!(rekey.stdout + rekey.stderr).includes(keyA));
  });

  it('refuses rekey-secrets for another secret store than the local one', async () => {
    const out = await espresso({ ESPRESSO_STORAGE: 'aws', ESPRESSO_S3_BUCKET: 'some-bucket' }, [
      'keys',
      'rekey-secrets',
    ]);
    assert.equal(out.code, 1);
    assert.match(out.stderr, /only the local secret store .* has a key ring/);
  });

  it('rekey re-encrypts what it can, names what it cannot, and says the old key is still needed', async () => {
    const dataDir = await tempDir();
    const keyA = newKey();
    const keyB = newKey();
    const ring = { ESPRESSO_DATA_DIR: dataDir, ESPRESSO_SECRET_KEY: `b:${keyB},a:${keyA}` };
    const old = secretsWith({ ESPRESSO_DATA_DIR: dataDir, ESPRESSO_SECRET_KEY: `a:${keyA}` });
    await old.put('credentials/cfg_good', 'good');
    await old.put('credentials/cfg_bad', 'bad');
    const file = join(dataDir, 'secrets', 'credentials%2Fcfg_bad.enc');
    const raw = await readFile(file);
    raw[raw.length - 1] = raw[raw.length - 1]! ^ 0xff;
    await writeFile(file, raw);

    const out = await espresso(ring, ['keys', 'rekey-secrets']);
    assert.equal(out.code, 1);
    assert.match(
      out.stdout,
      /could not re-encrypt credentials\/cfg_bad: secret credentials\/cfg_bad is unreadable/,
    );
    assert.match(out.stdout, /re-encrypted 2 secret file\(s\) with key b/);
    assert.match(
      out.stdout,
      /1 secret file\(s\) still encrypted with an older key \(key a: 1\): keep the older keys/,
    );
    assert.equal(await secretsWith(ring).get('credentials/cfg_good'), 'good');
  });
});
