import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CorruptDataError } from '../../src/storage';
import { LocalSecretStore, parseSecretKeys } from '../../src/storage/local-secret-store';
import { tempDir } from '../support/tmp';

describe('LocalSecretStore on disk', () => {
  let dir: string;
  let store: LocalSecretStore;
  const file = (id: string) => join(dir, 'secrets', `${encodeURIComponent(id)}.enc`);

  beforeEach(async () => {
    dir = await tempDir();
    store = new LocalSecretStore(join(dir, 'secrets'), { keyFile: join(dir, 'secret.key') });
  });

  it('never writes the plaintext and creates its key file readable by the owner only', async () => {
    await store.put('credentials/cfg_plain', 'sk_live_PLANTED_VALUE');
    const raw = await readFile(file('credentials/cfg_plain'));
    assert.ok(!raw.includes('sk_live_PLANTED_VALUE'));
    assert.equal((await stat(join(dir, 'secret.key'))).mode & 0o777, 0o600);
    assert.equal((await stat(file('credentials/cfg_plain'))).mode & 0o777, 0o600);
  });

  it('reports a tampered file by id, and the other secrets stay readable', async () => {
    await store.put('credentials/cfg_good', 'good');
    await store.put('credentials/cfg_bad', 'bad');
    const raw = await readFile(file('credentials/cfg_bad'));
    raw[raw.length - 1] = raw[raw.length - 1]! ^ 0xff;
    await writeFile(file('credentials/cfg_bad'), raw);
    await assert.rejects(store.get('credentials/cfg_bad'), (err: unknown) => {
      assert.ok(err instanceof CorruptDataError);
      assert.match(err.message, /credentials\/cfg_bad.*modified/);
      return true;
    });
    assert.equal(await store.get('credentials/cfg_good'), 'good');
  });

  it('reports a truncated file clearly', async () => {
    await store.put('credentials/cfg_trunc', 'value');
    await writeFile(
      file('credentials/cfg_trunc'),
      (await readFile(file('credentials/cfg_trunc'))).subarray(0, 10),
    );
    await assert.rejects(store.get('credentials/cfg_trunc'), /truncated/);
  });

  it('does not decrypt a file copied under another id', async () => {
    await store.put('credentials/cfg_one', 'one');
    await writeFile(file('credentials/cfg_two'), await readFile(file('credentials/cfg_one')));
    await assert.rejects(store.get('credentials/cfg_two'), CorruptDataError);
  });

  it('with the wrong key, refuses to write and leaves existing files untouched', async () => {
    await store.put('credentials/cfg_keep', 'keep');
    const before = await readFile(file('credentials/cfg_keep'));
    const wrong = new LocalSecretStore(join(dir, 'secrets'), {
      keys: parseSecretKeys(randomBytes(32).toString('base64'), 'test'),
      keyFile: join(dir, 'x'),
    });
    await assert.rejects(wrong.get('credentials/cfg_keep'), CorruptDataError);
    await assert.rejects(wrong.put('credentials/cfg_new', 'v'), /key does not match/);
    await assert.rejects(wrong.put('credentials/cfg_keep', 'v'), /key does not match/);
    assert.deepEqual(await readFile(file('credentials/cfg_keep')), before);
    assert.equal(await store.get('credentials/cfg_keep'), 'keep');
  });

  it('refuses to invent a new key when the key file is lost but secrets exist', async () => {
    await store.put('credentials/cfg_orphan', 'v');
    await rm(join(dir, 'secret.key'));
    const fresh = new LocalSecretStore(join(dir, 'secrets'), { keyFile: join(dir, 'secret.key') });
    await assert.rejects(fresh.put('credentials/cfg_other', 'v'), /key file .* is missing/);
    assert.ok(!(await readdir(dir)).includes('secret.key'));
  });
});
