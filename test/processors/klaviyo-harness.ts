import { KlaviyoProcessor } from '../../src/processors/klaviyo';
import type { AccountLimits } from '../../src/processors/pacing';
import type { ProcessorTarget } from '../../src/processors/types';
import { LocalSecretStore } from '../../src/storage/local-secret-store';
import { KlaviyoFake, RETRY_AFTER_SECONDS, type FakeAccount } from '../fakes/klaviyo-server';
import { tempDir } from '../support/tmp';
import { savedTarget, type ProcessorHarness } from './harness';

/** How much faster than espresso's real pace the harness's processor writes. */
const SPEEDUP = 100;

/**
 * Klaviyo at 100 times its real rate. It writes one profile per request at 10 a second, so the
 * contract's writes of hundreds of profiles would take minutes: tests of what it sends use this one
 * (on accounts whose limits the fake scales alike), tests of its pace use the real one
 * (`pacedProcessor`, on an account with Klaviyo's own limits: `accountOf(target).limitScale = 1`).
 */
class FastKlaviyoProcessor extends KlaviyoProcessor {
  override limits(): AccountLimits {
    const limits = super.limits();
    return { ...limits, rate: { ...limits.rate, requests: limits.rate.requests * SPEEDUP } };
  }
}

/** Klaviyo has no OAuth in espresso: the harness connects with private API keys only. */
export async function klaviyoHarness(): Promise<
  ProcessorHarness & {
    fake: KlaviyoFake;
    accountOf(target: ProcessorTarget): FakeAccount;
    /** The processor as espresso builds it, at Klaviyo's real pace. */
    pacedProcessor: KlaviyoProcessor;
  }
> {
  const fake = await new KlaviyoFake().start();
  const dir = await tempDir();
  const secrets = new LocalSecretStore(`${dir}/secrets`, { keyFile: `${dir}/key` });
  const processor = new FastKlaviyoProcessor({ secrets }, { apiBaseUrl: fake.url });
  const pacedProcessor = new KlaviyoProcessor({ secrets }, { apiBaseUrl: fake.url });
  const byAccountId = new Map<string, FakeAccount>();
  const accountOf = (target: ProcessorTarget) => byAccountId.get(target.espAccountId)!;

  return {
    fake,
    processor,
    pacedProcessor,
    secrets,
    accountOf,
    invalidApiKey: 'pk_wrong_PLANTED_KEY_123456',
    async connectWithApiKey() {
      const account = fake.newAccount();
      account.limitScale = SPEEDUP;
      byAccountId.set(account.id, account);
      const { credentials, account: info } = await processor.connectWithApiKey(account.apiKey);
      return savedTarget(secrets, credentials, {
        esp: 'klaviyo',
        espAccountId: info.accountId,
        espListId: undefined,
        fieldName: processor.fieldName(),
      });
    },
    async seed(target, contacts) {
      return fake.seed(accountOf(target), contacts);
    },
    async deleteField(target) {
      fake.deleteProperty(accountOf(target), target.fieldName);
    },
    async fieldExists(target) {
      return fake.propertyExists(accountOf(target), target.fieldName);
    },
    async valueOf(target, contactId) {
      const value = accountOf(target).profiles.get(contactId)?.properties[target.fieldName];
      return typeof value === 'string' ? value : undefined;
    },
    async rejectRows(target, contactIds) {
      for (const id of contactIds) accountOf(target).refused.add(id);
    },
    async rateLimit(target, on) {
      accountOf(target).rateLimited = on;
      return { retryAfterMs: RETRY_AFTER_SECONDS * 1000 };
    },
    stop: () => fake.stop(),
  };
}
