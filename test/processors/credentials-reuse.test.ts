// A process reads a configuration's credentials from the secret store once in a while, not once per
// ESP request (with AWS Secrets Manager each read is a paid call in the listing's path), and a
// reconnect's new credentials are used from the first request the old ones are refused.
import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { SandboxProcessor } from '../../src/processors/sandbox';
import type { ContactRef, ProcessorTarget } from '../../src/processors/types';
import { SandboxList } from '../../src/sandbox/state';
import { CorruptDataError, type SecretStore } from '../../src/storage';
import { LocalSecretStore } from '../../src/storage/local-secret-store';
import { tempDir } from '../support/tmp';
import { savedTarget } from './harness';
import { startSandbox } from './sandbox-harness';

describe('credentials read from the secret store', function () {
  this.timeout(60_000);
  let sandbox: Awaited<ReturnType<typeof startSandbox>>;
  let secrets: LocalSecretStore;
  let reads = 0;
  let processor: SandboxProcessor;
  before(async () => {
    sandbox = await startSandbox();
    const dir = await tempDir();
    secrets = new LocalSecretStore(`${dir}/secrets`, { keyFile: `${dir}/key` });
    const counting: SecretStore = {
      description: secrets.description,
      get: (id) => (reads++, secrets.get(id)),
      put: (id, value) => secrets.put(id, value),
      createIfAbsent: (id, value) => secrets.createIfAbsent(id, value),
      delete: (id) => secrets.delete(id),
      list: () => secrets.list(),
    };
    processor = new SandboxProcessor(
      { secrets: counting },
      { url: sandbox.url, rateLimit: { requests: 1000, perMs: 1000 }, concurrency: 8 },
    );
  });
  after(() => sandbox.stop());

  const account = () => sandbox.state.accounts.get('acct_demo')!;

  async function connected(apiKey: string, contacts: number): Promise<ProcessorTarget> {
    const suffix = randomBytes(4).toString('hex');
    const listId = `list_${suffix}`;
    account().lists.set(listId, new SandboxList(listId, `Test ${suffix}`));
    sandbox.state.seed(account().id, listId, contacts);
    const { credentials } = await processor.connectWithApiKey(apiKey);
    const target = await savedTarget(
      secrets,
      credentials,
      { esp: 'sandbox', espAccountId: account().id, espListId: listId, fieldName: processor.fieldName() },
      suffix,
    );
    await processor.maintain(target);
    return target;
  }

  async function listAll(target: ProcessorTarget): Promise<ContactRef[]> {
    const contacts: ContactRef[] = [];
    let cursor: string | undefined;
    do {
      const page = await processor.listPage(target, cursor, 'full');
      contacts.push(...page.contacts);
      cursor = page.nextCursor;
    } while (cursor);
    return contacts;
  }

  it('a run reads them once, not once per ESP request; the daily maintenance reads the store again', async () => {
    const target = await connected('sandbox-demo-key', 3_000);
    reads = 0;
    const contacts = await listAll(target);
    const results = await processor.writeValues(
      target,
      contacts.map((c) => ({ contactId: c.contactId, value: randomBytes(16).toString('base64url') })),
    );
    assert.equal(results.filter((r) => r.status === 'updated').length, 3_000);
    // 3 pages and 6 batches of 500: 9 requests, with the credentials maintenance read just before.
    assert.equal(reads, 0, `${reads} secret store reads for 9 ESP requests`);
    await processor.maintain(target);
    assert.equal(reads, 1, 'maintenance checks what the store holds now');
  });

  it('after a reconnect with a new key, the first request the old key is refused with uses the new one', async () => {
    const target = await connected('sandbox-demo-key', 1_000);
    const keys = account().apiKeys;
    const newKey = `sandbox-rotated-${randomBytes(6).toString('hex')}`;
    keys.push(newKey);
    try {
      // The publisher reconnects with a new key and revokes the old one at the ESP.
      await secrets.put(target.credentialsSecretId, JSON.stringify({ kind: 'apiKey', apiKey: newKey }));
      keys.splice(keys.indexOf('sandbox-demo-key'), 1);
      reads = 0;
      assert.equal((await listAll(target)).length, 1_000);
      assert.equal(reads, 1, 'the store is read again once, at the 401');
      assert.equal((await listAll(target)).length, 1_000);
      assert.equal(reads, 1, 'the new key is kept for the next requests');
    } finally {
      if (!keys.includes('sandbox-demo-key')) keys.push('sandbox-demo-key');
      keys.splice(keys.indexOf(newKey), 1);
    }
  });

  it('a secret stored by hand as the bare key is refused as unreadable, quoting none of it', async () => {
    const target = await connected('sandbox-demo-key', 10);
    const bare = `SGkey_LIVE_${randomBytes(8).toString('hex')}`;
    await secrets.put(target.credentialsSecretId, bare);
    const failed = await processor.verifyCredentials(target).then(
      () => undefined,
      (err: Error) => err,
    );
    assert.ok(failed instanceof CorruptDataError, String(failed));
    assert.match(failed.message, /the credentials are not JSON/);
    assert.ok(!failed.message.includes(bare.slice(0, 6)), failed.message);
  });
});
