import { strict as assert } from 'node:assert';
import { writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import {
  ConfigurationStore,
  CorruptDataError,
  NotFoundError,
  type NewConfiguration,
} from '../../src/storage';
import { LocalBlobStore } from '../../src/storage/local-blob-store';
import { tempDir } from '../support/tmp';

const sample: NewConfiguration = {
  esp: 'sandbox',
  accountLabel: 'Daily Brew',
  espAccountId: 'acct_1',
  espListId: 'list_1',
  fieldName: 'lcee',
  status: 'active',
  maintenance: true,
};

describe('ConfigurationStore', () => {
  let dir: string;
  let store: ConfigurationStore;
  beforeEach(async () => {
    dir = await tempDir();
    store = new ConfigurationStore(new LocalBlobStore(dir));
  });

  it('creates a document that references its credentials by id only', async () => {
    const created = await store.create(sample);
    assert.match(created.id, /^cfg_[a-z0-9]+$/);
    assert.equal(created.credentialsSecretId, `credentials/${created.id}`);
    assert.deepEqual(await store.get(created.id), created);
    assert.deepEqual(
      (await store.list()).map((c) => c.id),
      [created.id],
    );
  });

  it('loses no update when many writers change the same configuration at once', async () => {
    const created = await store.create(sample);
    const letters = 'abcdefghij'.split('');
    await Promise.all(
      letters.map((letter) => store.update(created.id, (c) => ({ accountLabel: c.accountLabel + letter }))),
    );
    const label = (await store.get(created.id)).accountLabel;
    for (const letter of letters) assert.ok(label.includes(letter), `update ${letter} lost: ${label}`);
    assert.equal(label.length, 'Daily Brew'.length + letters.length);
  });

  it('rejects an invalid change without touching the stored document', async () => {
    const created = await store.create(sample);
    await assert.rejects(store.update(created.id, () => ({ status: 'paused' as never })));
    assert.equal((await store.get(created.id)).status, 'active');
  });

  it('raises typed errors for unknown, malformed and corrupt documents', async () => {
    await assert.rejects(store.get('cfg_0000000000'), NotFoundError);
    await assert.rejects(store.get('../etc'), /configuration id/);
    await mkdir(join(dir, 'objects/configurations'), { recursive: true });
    await writeFile(join(dir, 'objects/configurations/cfg_broken00.json'), '{"id": "cfg_broken00"');
    await assert.rejects(store.get('cfg_broken00'), (err: unknown) => {
      assert.ok(err instanceof CorruptDataError);
      assert.match(err.message, /cfg_broken00.*not valid JSON/);
      return true;
    });
  });
});
