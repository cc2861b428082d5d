import { randomBytes } from 'node:crypto';
import { oauthRedirectUri } from '../../src/config';
import { SandboxProcessor } from '../../src/processors/sandbox';
import { sandboxOAuthCredentials } from '../../src/sandbox/consent';
import type { ProcessorTarget } from '../../src/processors/types';
import { createSandboxServer } from '../../src/sandbox/server';
import { SANDBOX_CLIENT } from '../../src/sandbox/oauth-client';
import { SandboxList, SandboxState } from '../../src/sandbox/state';
import { LocalSecretStore } from '../../src/storage/local-secret-store';
import { closeServer, listenLocal } from '../support/listen';
import { tempDir } from '../support/tmp';
import { savedTarget, type ProcessorHarness } from './harness';

export { sandboxOAuthCredentials };

/** espresso's redirect URI at the public URL web tests use (test/support/web.ts). */
export const TEST_REDIRECT_URI = oauthRedirectUri('http://localhost:3000', 'sandbox');

/**
 * A real Sandbox ESP server on a free port, in this process so tests can look at its state; with
 * an admin token of its own and espresso's OAuth client registered for TEST_REDIRECT_URI.
 */
export async function startSandbox(state = SandboxState.demo()) {
  state.clients.set(SANDBOX_CLIENT.id, { ...SANDBOX_CLIENT, redirectUris: [TEST_REDIRECT_URI] });
  const adminToken = randomBytes(32).toString('base64url');
  const server = createSandboxServer(state, { adminToken });
  const url = await listenLocal(server);
  return {
    state,
    server,
    url,
    adminToken,
    redirectUri: TEST_REDIRECT_URI,
    stop: () => closeServer(server),
  };
}

export async function sandboxHarness(): Promise<
  ProcessorHarness & { sandbox: Awaited<ReturnType<typeof startSandbox>> }
> {
  const sandbox = await startSandbox();
  const dir = await tempDir();
  const secrets = new LocalSecretStore(`${dir}/secrets`, { keyFile: `${dir}/key` });
  const processor = new SandboxProcessor(
    { secrets },
    { url: sandbox.url, rateLimit: { requests: 1000, perMs: 1000 }, concurrency: 8 },
  );
  const account = sandbox.state.accounts.get('acct_demo')!;
  const listOf = (target: ProcessorTarget) => account.lists.get(target.espListId!)!;

  const newTarget = async (credentials: unknown): Promise<ProcessorTarget> => {
    const suffix = randomBytes(4).toString('hex');
    const listId = `list_${suffix}`;
    account.lists.set(listId, new SandboxList(listId, `Test ${suffix}`));
    return savedTarget(
      secrets,
      credentials,
      {
        esp: 'sandbox',
        espAccountId: account.id,
        espListId: listId,
        fieldName: processor.fieldName(),
      },
      suffix,
    );
  };

  return {
    sandbox,
    processor,
    secrets,
    invalidApiKey: 'sk_wrong_PLANTED_KEY_123',
    async connectWithApiKey() {
      const { credentials } = await processor.connectWithApiKey('sandbox-demo-key');
      return newTarget(credentials);
    },
    async connectWithOAuth() {
      return newTarget(await sandboxOAuthCredentials(sandbox, processor, account.id));
    },
    async seed(target, contacts) {
      const list = listOf(target);
      const first = list.size;
      sandbox.state.seed(account.id, list.id, contacts);
      return Array.from({ length: contacts }, (_, i) => SandboxList.contactId(first + i));
    },
    async deleteField(target) {
      listOf(target).fields.delete(target.fieldName);
      listOf(target).values.delete(target.fieldName);
    },
    async fieldExists(target) {
      return listOf(target).fields.has(target.fieldName);
    },
    async valueOf(target, contactId) {
      return listOf(target).values.get(target.fieldName)?.[SandboxList.indexOf(contactId)!];
    },
    async rejectRows(target, contactIds) {
      for (const id of contactIds) listOf(target).suppressed.add(SandboxList.indexOf(id)!);
    },
    async rateLimit(_target, on) {
      account.settings.faults.rateLimitRate = on ? 1 : 0;
      return { retryAfterMs: 1000 };
    },
    async expireAccessTokens() {
      sandbox.state.expireAccessTokens(account.id);
    },
    async revokeGrants() {
      sandbox.state.revokeGrants(account.id);
    },
    tokenGrants: () => sandbox.state.tokenGrants,
    stop: () => sandbox.stop(),
  };
}
