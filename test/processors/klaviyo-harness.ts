import { randomBytes } from 'node:crypto';
import { KlaviyoProcessor } from '../../src/processors/klaviyo';
import type { ProcessorTarget } from '../../src/processors/types';
import { LocalSecretStore } from '../../src/storage/local-secret-store';
import { KlaviyoFake, RETRY_AFTER_SECONDS, type FakeAccount } from '../fakes/klaviyo-server';
import { tempDir } from '../support/tmp';
import type { ProcessorHarness } from './harness';

/** Klaviyo has no OAuth in espresso: the harness connects with private API keys only. */
export async function klaviyoHarness(): Promise<
  ProcessorHarness & {
    fake: KlaviyoFake;
    accountOf(target: ProcessorTarget): FakeAccount;
    processorWith(options: ConstructorParameters<typeof KlaviyoProcessor>[1]): KlaviyoProcessor;
  }
> {
  const fake = await new KlaviyoFake().start();
  const dir = await tempDir();
  const secrets = new LocalSecretStore(`${dir}/secrets`, { keyFile: `${dir}/key` });
  const processorWith = (options: ConstructorParameters<typeof KlaviyoProcessor>[1]) =>
    new KlaviyoProcessor({ secrets }, { apiBaseUrl: fake.url, jobPollMs: 5, ...options });
  const processor = processorWith({});
  const byAccountId = new Map<string, FakeAccount>();
  const accountOf = (target: ProcessorTarget) => byAccountId.get(target.espAccountId)!;

  return {
    fake,
    processor,
    processorWith,
    secrets,
    accountOf,
    invalidApiKey: 'pk_wrong_PLANTED_KEY_123456',
    async connectWithApiKey() {
      const account = fake.newAccount();
      byAccountId.set(account.id, account);
      const { credentials, account: info } = await processor.connectWithApiKey(account.apiKey);
      const suffix = randomBytes(4).toString('hex');
      const target: ProcessorTarget = {
        id: `cfg_${suffix}0000`,
        esp: 'klaviyo',
        espAccountId: info.accountId,
        espListId: undefined,
        fieldName: processor.fieldName(),
        credentialsSecretId: `credentials/cfg_${suffix}0000`,
      };
      await secrets.put(target.credentialsSecretId, JSON.stringify(credentials));
      return target;
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
