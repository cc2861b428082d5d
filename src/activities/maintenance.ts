import { Context } from '@temporalio/activity';
import type { ActivityDeps } from '.';
import { loadTarget, withAccountLease } from '.';
import type { MaintenanceReport } from '../processors/types';
import { mapFailures } from './failures';
import { HEARTBEAT_EVERY_MS } from './update-chunk';

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
        const context = Context.current();
        const beat = setInterval(() => context.heartbeat(), HEARTBEAT_EVERY_MS);
        try {
          // A few requests: the whole account's share, for a moment.
          // An export always follows: it takes the lease over.
          return await withAccountLease(
            deps,
            processor,
            target,
            processor.descriptor.concurrency,
            (pacing) => processor.maintain(target, { dryRun, pacing }),
            { runLease: true, handOver: () => true },
          );
        } finally {
          clearInterval(beat);
        }
      });
    },
  };
}
