// One process of the cross-process refresh test (test/processors/refresh-race.test.ts): a worker's
// view of one OAuth configuration (its own SandboxProcessor over the shared secret and blob
// directories). At the given moment it asks for the configuration's credentials and prints what it
// got: the access token, or the error.
import { setTimeout as sleep } from 'node:timers/promises';
import { RefreshLeases } from '../../src/processors/refresh-leases';
import { SandboxProcessor } from '../../src/processors/sandbox';
import { LocalBlobStore } from '../../src/storage/local-blob-store';
import { LocalSecretStore } from '../../src/storage/local-secret-store';

async function main(): Promise<void> {
  const [sandboxUrl, dir, secretId, startAt] = process.argv.slice(2) as [string, string, string, string];
  const processor = new SandboxProcessor(
    {
      secrets: new LocalSecretStore(`${dir}/secrets`, { keyFile: `${dir}/key` }),
      refreshLeases: new RefreshLeases(new LocalBlobStore(`${dir}/blobs`)),
    },
    { url: sandboxUrl, rateLimit: { requests: 1000, perMs: 1000 }, concurrency: 4 },
  );
  const target = {
    id: 'cfg_refresh',
    esp: 'sandbox',
    espAccountId: 'acct_demo',
    espListId: 'list_newsletter',
    fieldName: 'lcee',
    credentialsSecretId: secretId,
  };
  await sleep(Math.max(0, Number(startAt) - Date.now()));
  try {
    const { credentials } = await processor.credentials(target);
    console.log(
      JSON.stringify({ accessToken: credentials.kind === 'oauth2' ? credentials.accessToken : '' }),
    );
  } catch (err) {
    console.log(JSON.stringify({ error: `${(err as Error).name}: ${(err as Error).message}` }));
  }
}

void main();
