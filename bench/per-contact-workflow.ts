// The old design's shape, for comparison only: one unit of work per contact, modelled as one
// Temporal activity per contact, `window` at a time. Not used by espresso itself.
import { proxyActivities } from '@temporalio/workflow';
import type { PerContactActivities } from './per-contact-activities';

const { listContactsForBench, updateOneContact } = proxyActivities<PerContactActivities>({
  startToCloseTimeout: '1 minute',
  retry: { maximumAttempts: 5 },
});

export async function perContactWorkflow(input: {
  configurationId: string;
  window: number;
}): Promise<number> {
  const contacts = await listContactsForBench(input.configurationId);
  let next = 0;
  let done = 0;
  const lane = async () => {
    while (next < contacts.length) {
      const contact = contacts[next++]!;
      await updateOneContact(input.configurationId, contact.contactId, contact.value);
      done++;
    }
  };
  await Promise.all(Array.from({ length: input.window }, lane));
  return done;
}
