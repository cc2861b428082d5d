import { randomBytes } from 'node:crypto';
import { MailchimpProcessor } from '../../src/processors/mailchimp';
import type { ProcessorTarget } from '../../src/processors/types';
import { LocalSecretStore } from '../../src/storage/local-secret-store';
import { FakeMailchimp } from '../fakes/mailchimp-server';
import { tempDir } from '../support/tmp';
import { savedTarget, type ProcessorHarness } from './harness';

export type MailchimpHarness = ProcessorHarness & {
  fake: FakeMailchimp;
  processor: MailchimpProcessor;
  /** A target for credentials already obtained (OAuth tests). */
  newTarget(credentials: unknown, apiBaseUrl: string): Promise<ProcessorTarget>;
};

/**
 * Mailchimp OAuth tokens never expire and come without a refresh token, so there is no
 * `connectWithOAuth` here: the contract's refresh tests do not apply. The OAuth flow has its own
 * tests in mailchimp.contract.test.ts.
 */
export async function mailchimpHarness(): Promise<MailchimpHarness> {
  const fake = await new FakeMailchimp().start();
  const dir = await tempDir();
  const secrets = new LocalSecretStore(`${dir}/secrets`, { keyFile: `${dir}/key` });
  const processor = new MailchimpProcessor(
    { secrets },
    {
      oauth: { clientId: fake.client.id, clientSecret: fake.client.secret },
      apiBaseUrl: fake.apiTemplate,
      authBaseUrl: fake.url,
    },
  );
  const listOf = (target: ProcessorTarget) => fake.lists.get(target.espListId!)!;

  const newTarget = async (credentials: unknown, apiBaseUrl: string): Promise<ProcessorTarget> => {
    const suffix = randomBytes(4).toString('hex');
    const list = fake.addList(`Test ${suffix}`);
    return savedTarget(
      secrets,
      credentials,
      {
        esp: 'mailchimp',
        espAccountId: fake.accountId,
        espListId: list.id,
        fieldName: processor.fieldName(),
        apiBaseUrl,
      },
      suffix,
    );
  };

  return {
    fake,
    processor,
    secrets,
    newTarget,
    invalidApiKey: '0123456789abcdefPLANTEDKEY-us7',
    async connectWithApiKey() {
      const { credentials, account } = await processor.connectWithApiKey(fake.apiKey);
      return newTarget(credentials, account.apiBaseUrl!);
    },
    async seed(target, contacts) {
      return fake.seed(listOf(target), contacts);
    },
    async deleteField(target) {
      const list = listOf(target);
      list.mergeFields.delete(target.fieldName);
      for (const m of list.members) delete m.merge_fields[target.fieldName];
    },
    async fieldExists(target) {
      return listOf(target).mergeFields.has(target.fieldName);
    },
    async valueOf(target, contactId) {
      return listOf(target).byEmail.get(contactId)?.merge_fields[target.fieldName] || undefined;
    },
    async rejectRows(target, contactIds) {
      for (const id of contactIds) listOf(target).refused.add(id);
    },
    async rateLimit(_target, on) {
      fake.rateLimited = on;
      // Mailchimp's 429 names no delay: espresso waits its default second.
      return { retryAfterMs: 1000 };
    },
    stop: () => fake.stop(),
  };
}
