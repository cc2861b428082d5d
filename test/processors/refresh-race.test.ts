// Several processes refreshing one OAuth grant at the same moment (issue: a healthy configuration
// sent to needs_reauth by a refresh race). The Sandbox rotates refresh tokens and revokes the whole
// grant when a rotated one is presented again (reuse detection).
import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { projectRoot } from '../../src/paths';
import { SandboxProcessor } from '../../src/processors/sandbox';
import type { Credentials } from '../../src/processors/types';
import { leaseMs, REFRESH_LEASE_MS, RefreshLeases } from '../../src/processors/refresh-leases';
import type { ProcessorTarget } from '../../src/processors/types';
import type { SecretStore } from '../../src/storage';
import { LocalBlobStore } from '../../src/storage/local-blob-store';
import { LocalSecretStore } from '../../src/storage/local-secret-store';
import { saveConnection } from '../../src/connect';
import { ProcessorRegistry } from '../../src/processors/registry';
import { tempDir, tempStores } from '../support/tmp';
import { sandboxOAuthCredentials, startSandbox } from './sandbox-harness';

const run = promisify(execFile);
const CHILD = join(projectRoot, 'dist', 'test', 'support', 'refresh-child.js');
const SECRET_ID = 'cred_refresh_race';

type Sandbox = Awaited<ReturnType<typeof startSandbox>>;

/** A Sandbox, and a secret store in a directory of its own (its key file beside it). */
async function sandboxAndSecrets(): Promise<{ sandbox: Sandbox; dir: string; secrets: LocalSecretStore }> {
  const sandbox = await startSandbox();
  const dir = await tempDir();
  return { sandbox, dir, secrets: new LocalSecretStore(`${dir}/secrets`, { keyFile: `${dir}/key` }) };
}

describe('OAuth refresh across processes', function () {
  this.timeout(120_000);
  let sandbox: Sandbox;
  let dir: string;
  let secrets: LocalSecretStore;
  before(async () => {
    ({ sandbox, dir, secrets } = await sandboxAndSecrets());
    const processor = new SandboxProcessor(
      { secrets },
      { url: sandbox.url, rateLimit: { requests: 1000, perMs: 1000 }, concurrency: 4 },
    );
    await secrets.put(
      SECRET_ID,
      JSON.stringify(await sandboxOAuthCredentials(sandbox, processor, 'acct_demo')),
    );
  });
  after(() => sandbox.stop());

  /** The stored access token expires now (as it would mid-run); every process asks for credentials at once. */
  async function expireAndAskFrom(
    processes: number,
  ): Promise<Array<{ accessToken?: string; error?: string }>> {
    const stored = JSON.parse(await secrets.get(SECRET_ID)) as Extract<Credentials, { kind: 'oauth2' }>;
    await secrets.put(SECRET_ID, JSON.stringify({ ...stored, expiresAt: Date.now() - 1 }));
    sandbox.state.expireAccessTokens('acct_demo');
    const startAt = String(Date.now() + 1_500); // after every process has loaded
    const outputs = await Promise.all(
      Array.from({ length: processes }, () =>
        run(process.execPath, [CHILD, sandbox.url, dir, SECRET_ID, startAt]),
      ),
    );
    return outputs.map(({ stdout }) => JSON.parse(stdout.trim()) as { accessToken?: string; error?: string });
  }

  for (const processes of [2, 4]) {
    it(`${processes} processes at once: one token grant per expiry, no refresh token presented twice`, async () => {
      const oauth = sandbox.state.accounts.get('acct_demo')!.oauth;
      for (let round = 1; round <= 3; round++) {
        const before = { ...oauth };
        const answers = await expireAndAskFrom(processes);
        assert.deepEqual(
          answers.filter((a) => a.error),
          [],
          `round ${round}: a process failed to get credentials`,
        );
        assert.equal(
          new Set(answers.map((a) => a.accessToken)).size,
          1,
          'the processes got different tokens',
        );
        assert.equal(
          oauth.refreshTokenReuses,
          before.refreshTokenReuses,
          'a rotated refresh token was reused',
        );
        assert.equal(oauth.refreshes - before.refreshes, 1, `round ${round}: not one refresh per expiry`);
        const saved = JSON.parse(await secrets.get(SECRET_ID)) as { accessToken: string };
        assert.equal(saved.accessToken, answers[0]!.accessToken, 'the new tokens were not saved');
      }
    });
  }

  it('a grant the ESP really revoked fails in every process (the publisher must reconnect)', async () => {
    sandbox.state.revokeGrants('acct_demo');
    const answers = await expireAndAskFrom(2);
    for (const a of answers) assert.match(a.error ?? '', /^InvalidCredentialsError/);
  });
});

describe('OAuth refresh in one process: rotated tokens never lost, leases long enough, cancellation', function () {
  this.timeout(60_000);
  let sandbox: Sandbox;
  let dir: string;
  let store: LocalSecretStore;
  before(async () => {
    ({ sandbox, dir, secrets: store } = await sandboxAndSecrets());
  });
  after(() => sandbox.stop());

  /** A secret store whose next `failures` writes fail, as a store's outage would. */
  const failing = (failures: { left: number }): SecretStore => ({
    description: store.description,
    get: (id) => store.get(id),
    put: async (id, value) => {
      if (failures.left-- > 0) throw new Error('ServiceUnavailable: the secret store is down');
      return store.put(id, value);
    },
    createIfAbsent: (id, value) => store.createIfAbsent(id, value),
    delete: (id) => store.delete(id),
    list: () => store.list(),
  });

  async function expiredGrant(id: string, processor: SandboxProcessor): Promise<ProcessorTarget> {
    const granted = (await sandboxOAuthCredentials(sandbox, processor, 'acct_demo')) as Extract<
      Credentials,
      { kind: 'oauth2' }
    >;
    await store.put(id, JSON.stringify({ ...granted, expiresAt: Date.now() - 1 }));
    sandbox.state.expireAccessTokens('acct_demo');
    return {
      id: `cfg_${id}`,
      esp: 'sandbox',
      espAccountId: 'acct_demo',
      espListId: 'list_main',
      fieldName: 'lcee',
      credentialsSecretId: id,
    };
  }

  const sandboxProcessor = (secrets: SecretStore, extra: object = {}) =>
    new SandboxProcessor(
      { secrets, ...extra },
      { url: sandbox.url, rateLimit: { requests: 1000, perMs: 1000 }, concurrency: 4 },
    );

  it('a refresh whose save fails saves the rotated tokens again; the next process uses them, no refresh token presented twice', async () => {
    const failures = { left: 2 };
    const target = await expiredGrant('cred_save_retry', sandboxProcessor(store));
    const reusesBefore = sandbox.state.accounts.get('acct_demo')!.oauth.refreshTokenReuses;
    const { credentials, refreshed } = await sandboxProcessor(failing(failures)).credentials(target);
    assert.equal(refreshed, true);
    assert.equal(failures.left, -1, 'saved on the third try');
    assert.deepEqual(JSON.parse(await store.get(target.credentialsSecretId)), credentials);
    // Another process, once these expire too, refreshes with the saved refresh token.
    const saved = JSON.parse(await store.get(target.credentialsSecretId)) as Record<string, unknown>;
    await store.put(target.credentialsSecretId, JSON.stringify({ ...saved, expiresAt: Date.now() - 1 }));
    assert.equal((await sandboxProcessor(store).credentials(target)).refreshed, true);
    assert.equal(sandbox.state.accounts.get('acct_demo')!.oauth.refreshTokenReuses, reusesBefore);
  });

  it('while the store refuses every save, the process keeps and uses the rotated tokens, and saves them at its next read', async function () {
    const failures = { left: 100 };
    const target = await expiredGrant('cred_save_outage', sandboxProcessor(store));
    const processor = sandboxProcessor(failing(failures));
    const { credentials } = await processor.credentials(target);
    const stored = JSON.parse(await store.get(target.credentialsSecretId)) as { accessToken: string };
    assert.notEqual(
      stored.accessToken,
      (credentials as { accessToken: string }).accessToken,
      'not saved yet',
    );
    // Its requests use the new tokens (the old access token was expired at the ESP).
    assert.equal((await processor.verifyCredentials(target)).accountId, 'acct_demo');
    failures.left = 0; // the store is back
    await processor.verifyCredentials(target); // reads the store: saves first
    assert.deepEqual(JSON.parse(await store.get(target.credentialsSecretId)), credentials);
  });

  it('holds its lease longer than its token request may take (ESPRESSO_ESP_TIMEOUT_MS up to 300 s)', () => {
    assert.equal(leaseMs(30_000), REFRESH_LEASE_MS);
    assert.equal(leaseMs(300_000), 315_000);
  });

  it("a cancelled activity waiting for another worker's refresh stops waiting at once", async () => {
    const blobs = new LocalBlobStore(`${dir}/blobs`);
    const leases = new RefreshLeases(blobs);
    const processor = sandboxProcessor(store, { refreshLeases: leases });
    const target = await expiredGrant('cred_lease_wait', processor);
    // A worker that took the lease and died: it frees itself after REFRESH_LEASE_MS.
    assert.equal(await leases.take(target.credentialsSecretId, 'a-dead-worker'), true);
    const cancelled = new AbortController();
    const waiting = processor.credentials(target, cancelled.signal);
    await new Promise((r) => setTimeout(r, 500));
    const abortedAt = Date.now();
    cancelled.abort();
    await assert.rejects(waiting, { name: 'AbortError' });
    assert.ok(Date.now() - abortedAt < 300, `ended ${Date.now() - abortedAt} ms after the abort`);
  });
});

describe('a reconnect while another process refreshes the grant it replaces', () => {
  it("saves the reconnect's credentials after that refresh: its tokens never land over them", async () => {
    const stores = await tempStores();
    const configuration = await stores.configurations.create({
      esp: 'sandbox',
      accountLabel: 'Demo',
      espAccountId: 'acct_demo',
      espListId: 'list_main',
      fieldName: 'lcee',
      status: 'needs_reauth',
      maintenance: true,
    });
    const secretId = configuration.credentialsSecretId;
    const oldGrant = { kind: 'oauth2', accessToken: 'old-access', refreshToken: 'old-refresh' };
    await stores.secrets.put(secretId, JSON.stringify(oldGrant));
    // A worker is refreshing the old grant: it holds the lease, and will save its rotated tokens.
    const leases = new RefreshLeases(stores.blobs);
    assert.equal(await leases.take(secretId, 'refreshing-worker'), true);
    const reconnected = { kind: 'oauth2', accessToken: 'new-access', refreshToken: 'new-refresh' } as const;
    const processor = new SandboxProcessor(
      { secrets: stores.secrets },
      { url: 'http://127.0.0.1:9', rateLimit: { requests: 1, perMs: 1000 }, concurrency: 1 },
    );
    const saving = saveConnection(
      { stores, processors: new ProcessorRegistry([processor]) },
      {
        esp: 'sandbox',
        credentials: reconnected,
        account: { accountId: 'acct_demo', accountLabel: 'Demo', lists: [] },
        reauthorizeId: configuration.id,
      },
    );
    await new Promise((r) => setTimeout(r, 500));
    // The refresh ends: its tokens of the old grant are saved, then the lease given back.
    await stores.secrets.put(secretId, JSON.stringify({ ...oldGrant, accessToken: 'old-access-2' }));
    await leases.release(secretId, 'refreshing-worker');
    assert.equal((await saving).configuration.status, 'active');
    assert.deepEqual(JSON.parse(await stores.secrets.get(secretId)), reconnected);
  });
});
