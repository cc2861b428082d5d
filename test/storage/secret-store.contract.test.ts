import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { SecretStore } from '../../src/storage';
import { NotFoundError } from '../../src/storage';
import { AwsSecretStore } from '../../src/storage/aws-secret-store';
import { LocalSecretStore } from '../../src/storage/local-secret-store';
import { motoCredentials, motoEndpoint } from '../support/moto';
import { tempDir } from '../support/tmp';

const adapters: Array<[string, () => Promise<SecretStore>]> = [
  [
    'local encrypted files',
    async () => {
      const dir = await tempDir();
      return new LocalSecretStore(`${dir}/secrets`, { keyFile: `${dir}/secret.key` });
    },
  ],
  [
    'AWS Secrets Manager (moto server)',
    async () => {
      const client = new SecretsManagerClient({
        endpoint: await motoEndpoint(),
        region: 'us-east-1',
        credentials: motoCredentials,
      });
      return new AwsSecretStore(client, `espresso-test-${randomBytes(4).toString('hex')}/`);
    },
  ],
];

for (const [name, makeStore] of adapters) {
  describe(`SecretStore contract: ${name}`, () => {
    let store: SecretStore;
    before(async () => {
      store = await makeStore();
    });

    it('returns the value that was put, and the latest after an overwrite', async () => {
      const value = JSON.stringify({ accessToken: 'tok-ä€-1', refreshToken: 'r1' });
      await store.put('credentials/cfg_a', value);
      assert.equal(await store.get('credentials/cfg_a'), value);
      await store.put('credentials/cfg_a', 'second');
      assert.equal(await store.get('credentials/cfg_a'), 'second');
    });

    it('creates a secret only when absent; concurrent creators all get the one stored value', async () => {
      const values = Array.from({ length: 8 }, (_, i) => `candidate-${i}`);
      const results = await Promise.all(values.map((v) => store.createIfAbsent('payload-keys-test', v)));
      const stored = await store.get('payload-keys-test');
      assert.ok(values.includes(stored), stored);
      assert.deepEqual(new Set(results), new Set([stored]));
      assert.equal(await store.createIfAbsent('payload-keys-test', 'later'), stored);
      assert.ok(!(await store.list()).some((id) => id.includes('.tmp')));
    });

    it('raises NotFoundError for a missing id', async () => {
      await assert.rejects(store.get('credentials/cfg_missing'), NotFoundError);
    });

    it('lists ids and forgets deleted ones; deleting a missing id is fine', async () => {
      await store.put('credentials/cfg_l1', '1');
      await store.put('credentials/cfg_l2', '2');
      const listed = await store.list();
      assert.ok(
        listed.includes('credentials/cfg_l1') && listed.includes('credentials/cfg_l2'),
        String(listed),
      );
      await store.delete('credentials/cfg_l1');
      await store.delete('credentials/cfg_l1');
      assert.ok(!(await store.list()).includes('credentials/cfg_l1'));
      await assert.rejects(store.get('credentials/cfg_l1'), NotFoundError);
    });
  });
}
