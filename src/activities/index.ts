// The one place that wires stores, ESP processors and alerts into activities; tests call
// createActivities with their own, the worker with the configured ones.
import { createChunkWindowsActivities } from './chunk-windows';
import { createConfigurationActivities } from './configurations';
import type { ActivityDeps } from './deps';
import { createExportActivities } from './export';
import { createExportedChunksActivities } from './exported-chunks';
import { createMaintenanceActivities } from './maintenance';
import { createSelfCheckActivities } from './self-check';
import { createSummaryActivities } from './summary';
import { createUpdateChunkActivities } from './update-chunk';

export function createActivities(deps: ActivityDeps) {
  return {
    ...createSelfCheckActivities(deps),
    ...createConfigurationActivities(deps),
    ...createMaintenanceActivities(deps),
    ...createExportActivities(deps),
    ...createExportedChunksActivities(deps),
    ...createUpdateChunkActivities(deps),
    ...createChunkWindowsActivities(deps),
    ...createSummaryActivities(deps),
  };
}

export type Activities = ReturnType<typeof createActivities>;
