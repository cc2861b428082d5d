import { SendGridProcessor, type SendGridOptions } from '../../src/processors/sendgrid';
import type { ProcessorTarget } from '../../src/processors/types';
import { LocalSecretStore } from '../../src/storage/local-secret-store';
import { FakeSendGrid } from '../fakes/sendgrid-server';
import { tempDir } from '../support/tmp';
import { savedTarget, type ProcessorHarness } from './harness';

/**
 * The SendGrid processor against a fake SendGrid on 127.0.0.1. SendGrid contacts are
 * account-wide (no list to select), so every target gets its own fake account (server).
 */
export async function sendgridHarness(
  options: SendGridOptions = {},
): Promise<ProcessorHarness & { fake: FakeSendGrid; fakes: FakeSendGrid[]; apiKey: string; tmp: string }> {
  const dir = await tempDir();
  const tmp = await tempDir('espresso-sendgrid-downloads-');
  const secrets = new LocalSecretStore(`${dir}/secrets`, { keyFile: `${dir}/key` });
  const fakes: FakeSendGrid[] = [];
  const byTarget = new Map<string, FakeSendGrid>();
  const make = (fake: FakeSendGrid) =>
    new SendGridProcessor({ secrets }, { apiBaseUrl: fake.url, jobPollMs: 5, tmpDir: tmp, ...options });
  const first = await new FakeSendGrid().start();
  fakes.push(first);
  const processor = make(first);
  const apiKey = [...first.apiKeys][0]!;
  const fakeOf = (target: ProcessorTarget) => byTarget.get(target.id)!;

  return {
    fake: first,
    fakes,
    apiKey,
    tmp,
    processor,
    secrets,
    invalidApiKey: 'SG.wrong-PLANTED_KEY_123.abcdef',
    async connectWithApiKey() {
      // A fresh account per target; the saved configuration names its API base URL.
      const fake = await new FakeSendGrid().start();
      fakes.push(fake);
      const { credentials, account } = await make(fake).connectWithApiKey(apiKey);
      const target = await savedTarget(secrets, credentials, {
        esp: 'sendgrid',
        espAccountId: account.accountId,
        espListId: undefined,
        fieldName: processor.fieldName(),
        apiBaseUrl: fake.url,
      });
      byTarget.set(target.id, fake);
      return target;
    },
    async seed(target, contacts) {
      return fakeOf(target).seed(contacts);
    },
    async deleteField(target) {
      fakeOf(target).deleteField(target.fieldName);
    },
    async fieldExists(target) {
      return fakeOf(target).field(target.fieldName) !== undefined;
    },
    async valueOf(target, contactId) {
      return fakeOf(target).valueOf(contactId, target.fieldName);
    },
    async rejectRows(target, contactIds) {
      const fake = fakeOf(target);
      for (const id of contactIds) fake.rejectedEmails.add(fake.contacts.get(id)!.email);
    },
    async rateLimit(target, on) {
      const fake = fakeOf(target);
      fake.rateLimited = on;
      // SendGrid announces the reset as a time in whole seconds: up to a second (and the answer's
      // transit) less than the delay.
      return { retryAfterMs: fake.rateLimitResetIn * 1000, toleranceMs: 1_500 };
    },
    async stop() {
      await Promise.all(fakes.map((f) => f.stop()));
    },
  };
}
