import type { ActivityDeps } from '.';
import { loadTarget } from '.';
import type { MaintenanceReport } from '../processors/types';
import { mapFailures } from './failures';

export function createMaintenanceActivities(deps: ActivityDeps) {
  return {
    /** Validates (and refreshes) credentials, then re-creates the field if it was deleted. */
    async runMaintenance(configurationId: string): Promise<MaintenanceReport> {
      return mapFailures(async () => {
        const { processor, target } = await loadTarget(deps, configurationId);
        return processor.maintain(target);
      });
    },
  };
}
