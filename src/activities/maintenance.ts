import type { ActivityDeps } from '.';
import { loadTarget } from '.';
import type { MaintenanceReport } from '../processors/types';
import { mapFailures } from './failures';

export function createMaintenanceActivities(deps: ActivityDeps) {
  return {
    /**
     * Validates (and refreshes) credentials, then re-creates the field if it was deleted; a dry run
     * only reports what it would do. Runs of earlier versions pass the configuration id alone.
     */
    async runMaintenance(
      input: string | { configurationId: string; dryRun?: boolean },
    ): Promise<MaintenanceReport> {
      const { configurationId, dryRun } = typeof input === 'string' ? { configurationId: input } : input;
      return mapFailures(async () => {
        const { processor, target } = await loadTarget(deps, configurationId);
        return processor.maintain(target, { dryRun });
      });
    },
  };
}
