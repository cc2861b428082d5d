import type { ActivityDeps } from './deps';
import { loadTarget } from './deps';
import type { MaintenanceReport } from '../processors/types';
import { AccountShare } from './account-share';
import { mapFailures } from './failures';

export function createMaintenanceActivities(deps: ActivityDeps) {
  return {
    /**
     * Runs of earlier versions: validates (and refreshes) credentials, then re-creates the field if
     * it was deleted. (Runs now do this at the start of their export: src/activities/export.ts.)
     */
    async runMaintenance(
      input: string | { configurationId: string; dryRun?: boolean },
    ): Promise<MaintenanceReport> {
      const { configurationId, dryRun } = typeof input === 'string' ? { configurationId: input } : input;
      return mapFailures(async () => {
        const { processor, target } = await loadTarget(deps, configurationId);
        const share = AccountShare.whole(deps, processor, target);
        return processor.maintain(target, { dryRun, pacing: share.pacing });
      });
    },
  };
}
