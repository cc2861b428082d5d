import { KitProcessor } from '../../src/processors/kit-esp';
import type { AccountLimits } from '../../src/processors/pacing';
import type { ProcessorTarget } from '../../src/processors/types';
import { LocalSecretStore } from '../../src/storage/local-secret-store';
import { FakeKit, type FakeKitAccount } from '../fakes/kit-server';
import { tempDir } from '../support/tmp';
import { savedTarget, type ProcessorHarness } from './harness';

/** How much faster than espresso's real pace the harness's processor sends. */
const SPEEDUP = 100;

/**
 * Kit at 100 times its real rate. With an API key it writes one subscriber per request at 2 a
 * second, so the contract's writes of hundreds of subscribers would take minutes: the harness's
 * processor and the fake's accounts are scaled alike (`limitScale`), so going over Kit's limits
 * still fails the tests.
 */
class FastKitProcessor extends KitProcessor {
  override limits(): AccountLimits {
    const limits = super.limits();
    const scale = (l: { requests: number; perMs: number }) => ({ ...l, requests: l.requests * SPEEDUP });
    const extra = Object.fromEntries(Object.entries(limits.extra ?? {}).map(([k, l]) => [k, scale(l)]));
    return { ...limits, rate: scale(limits.rate), extra };
  }
}

export type KitHarness = ProcessorHarness & {
  fake: FakeKit;
  processor: KitProcessor;
  accountOf(target: ProcessorTarget): FakeKitAccount;
};

/** The processor against a fake Kit; every target is its own Kit account. */
export async function kitHarness(): Promise<KitHarness> {
  const fake = await new FakeKit().start();
  const dir = await tempDir();
  const secrets = new LocalSecretStore(`${dir}/secrets`, { keyFile: `${dir}/key` });
  const processor = new FastKitProcessor(
    { secrets },
    { oauth: { clientId: fake.client.id, clientSecret: fake.client.secret }, apiBaseUrl: fake.url },
  );
  const accountOf = (target: ProcessorTarget) => fake.accounts.get(Number(target.espAccountId))!;

  const newTarget = async (accountId: string, credentials: unknown): Promise<ProcessorTarget> => {
    fake.accounts.get(Number(accountId))!.limitScale = SPEEDUP;
    return savedTarget(secrets, credentials, {
      esp: 'kit',
      espAccountId: accountId,
      fieldName: processor.fieldName(),
    });
  };

  return {
    fake,
    processor,
    secrets,
    accountOf,
    invalidApiKey: 'kit_PLANTED_wrong_key_0123456789',
    async connectWithApiKey() {
      const account = fake.newAccount();
      const { credentials, account: info } = await processor.connectWithApiKey(account.apiKey);
      return newTarget(info.accountId, credentials);
    },
    async connectWithOAuth() {
      fake.consentAccount = fake.newAccount();
      const redirectUri = 'http://127.0.0.1:9/auth/kit/callback';
      const { url } = processor.authorizationRequest(redirectUri, 'state-1');
      const consent = await fetch(url, { redirect: 'manual' });
      if (consent.status !== 302) throw new Error(`consent answered ${consent.status}`);
      const code = new URL(consent.headers.get('location')!).searchParams.get('code')!;
      const { credentials, account } = await processor.completeAuthorization(code, redirectUri);
      fake.consentAccount = undefined;
      return newTarget(account.accountId, credentials);
    },
    async seed(target, contacts) {
      return fake.seed(accountOf(target), contacts);
    },
    async deleteField(target) {
      fake.deleteField(accountOf(target), target.fieldName);
    },
    async fieldExists(target) {
      return fake.fieldByKey(accountOf(target), target.fieldName) !== undefined;
    },
    async valueOf(target, contactId) {
      return fake.valueOf(accountOf(target), contactId, target.fieldName);
    },
    async rejectRows(target, contactIds) {
      for (const id of contactIds) accountOf(target).refused.add(id);
    },
    async rateLimit(target, on) {
      accountOf(target).rateLimited = on;
      // Kit's 429 names no delay; its reference says a wait of up to 60 s resets the window.
      return { retryAfterMs: 60_000 };
    },
    async expireAccessTokens(target) {
      fake.expireAccessTokens(accountOf(target));
    },
    async revokeGrants(target) {
      fake.revokeGrants(accountOf(target));
    },
    tokenGrants: () => fake.tokenGrants,
    stop: () => fake.stop(),
  };
}
