import type { ActivityDeps } from '../src/activities/deps';
import { loadTarget } from '../src/activities/deps';
import { newValue } from '../src/activities/export-listing';

export function createPerContactActivities(deps: ActivityDeps) {
  return {
    async listContactsForBench(configurationId: string) {
      const { processor, target } = await loadTarget(deps, configurationId);
      const contacts: Array<{ contactId: string; value: string }> = [];
      let cursor: string | undefined;
      do {
        const page = await processor.listPage(target, cursor, 'full');
        for (const c of page.contacts) contacts.push({ contactId: c.contactId, value: newValue() });
        cursor = page.nextCursor;
      } while (cursor);
      return contacts;
    },
    async updateOneContact(configurationId: string, contactId: string, value: string) {
      const { processor, target } = await loadTarget(deps, configurationId);
      const [result] = await processor.writeValues(target, [{ contactId, value }]);
      if (result?.status !== 'updated') throw new Error(`contact not updated`);
    },
  };
}

export type PerContactActivities = ReturnType<typeof createPerContactActivities>;
