import { BrevoProcessor } from '../../src/processors/brevo';
import type { AccountLimits } from '../../src/processors/pacing';
import type { ProcessorTarget } from '../../src/processors/types';
import { LocalSecretStore } from '../../src/storage/local-secret-store';
import { BrevoFake, RESET_SECONDS, type FakeAccount } from '../fakes/brevo-server';
import { tempDir } from '../support/tmp';
import { savedTarget, type ProcessorHarness } from './harness';

/** How much faster than espresso's real pace the harness's processor goes. */
const SPEEDUP = 100;

/**
 * Brevo at 100 times its real limits: GET /account is paced at 90 an hour, so the contract's
 * repeated maintenances of one account would wait 40 s each. Tests of its pace use the real one
 * (`pacedProcessor`, on an account with Brevo's own limits: `accountOf(target).limitScale = 1`).
 */
class FastBrevoProcessor extends BrevoProcessor {
  override limits(): AccountLimits {
    const { rate, extra = {}, ...rest } = super.limits();
    const faster = <L extends { requests: number }>(l: L): L => ({ ...l, requests: l.requests * SPEEDUP });
    return {
      ...rest,
      rate: faster(rate),
      extra: Object.fromEntries(Object.entries(extra).map(([name, l]) => [name, faster(l)])),
    };
  }
}

/** Brevo connects with API keys only (docs/esps/brevo.md): no OAuth in the harness. */
export async function brevoHarness(): Promise<
  ProcessorHarness & {
    fake: BrevoFake;
    accountOf(target: ProcessorTarget): FakeAccount;
    /** The processor as espresso builds it, at Brevo's real pace. */
    pacedProcessor: BrevoProcessor;
  }
> {
  const fake = await new BrevoFake().start();
  const dir = await tempDir();
  const secrets = new LocalSecretStore(`${dir}/secrets`, { keyFile: `${dir}/key` });
  const processor = new FastBrevoProcessor({ secrets }, { apiBaseUrl: fake.apiBaseUrl });
  const pacedProcessor = new BrevoProcessor({ secrets }, { apiBaseUrl: fake.apiBaseUrl });
  const byAccountId = new Map<string, FakeAccount>();
  const accountOf = (target: ProcessorTarget) => byAccountId.get(target.espAccountId)!;

  return {
    fake,
    processor,
    pacedProcessor,
    secrets,
    accountOf,
    invalidApiKey: 'xkeysib-PLANTED0wrong0key0123456789',
    async connectWithApiKey() {
      const account = fake.newAccount();
      account.limitScale = SPEEDUP;
      byAccountId.set(account.organizationId, account);
      const { credentials, account: info } = await processor.connectWithApiKey(account.apiKey);
      return savedTarget(secrets, credentials, {
        esp: 'brevo',
        espAccountId: info.accountId,
        espListId: undefined,
        fieldName: processor.fieldName(),
      });
    },
    async seed(target, contacts) {
      return fake.seed(accountOf(target), contacts);
    },
    async deleteField(target) {
      fake.deleteAttribute(accountOf(target), target.fieldName);
    },
    async fieldExists(target) {
      return accountOf(target).attributes.has(target.fieldName);
    },
    async valueOf(target, contactId) {
      const value = accountOf(target).contacts.get(Number(contactId))?.attributes[target.fieldName];
      return typeof value === 'string' ? value : undefined;
    },
    async rejectRows(target, contactIds) {
      for (const id of contactIds) accountOf(target).refused.add(Number(id));
    },
    async rateLimit(target, on) {
      accountOf(target).rateLimited = on;
      return { retryAfterMs: RESET_SECONDS * 1000 };
    },
    stop: () => fake.stop(),
  };
}
