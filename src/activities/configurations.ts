import type { ActivityDeps } from '.';
import { loadTarget } from '.';
import { mapFailures } from './failures';

export interface RunContext {
  esp: string;
  status: 'active' | 'needs_reauth' | 'disabled';
  maintenance: boolean;
  /** From the ESP's descriptor: how many chunk updates to keep in flight. */
  concurrency: number;
}

export function createConfigurationActivities(deps: ActivityDeps) {
  return {
    /** Ids of the configurations the daily run covers. */
    async listActiveConfigurations(): Promise<Array<{ configurationId: string; esp: string }>> {
      const all = await deps.stores.configurations.list();
      return all.filter((c) => c.status === 'active').map((c) => ({ configurationId: c.id, esp: c.esp }));
    },

    async loadRunContext(configurationId: string): Promise<RunContext> {
      return mapFailures(async () => {
        const { configuration, processor } = await loadTarget(deps, configurationId);
        return {
          esp: configuration.esp,
          status: configuration.status,
          maintenance: configuration.maintenance,
          concurrency: processor.descriptor.concurrency,
        };
      });
    },

    /**
     * Moves the configuration to needs_reauth. The alert goes out only when the status changes, so
     * repeated failures (daily runs, retries) alert once.
     */
    async markNeedsReauth(input: { configurationId: string; reason: string }): Promise<{ changed: boolean }> {
      return mapFailures(async () => {
        let changed = false;
        const updated = await deps.stores.configurations.update(input.configurationId, (c) => {
          changed = c.status !== 'needs_reauth';
          return { status: 'needs_reauth', statusReason: input.reason.slice(0, 500) };
        });
        if (changed) {
          await deps.alerts({
            configurationId: updated.id,
            esp: updated.esp,
            status: 'needs_reauth',
            message: `credentials no longer work; re-authorize this configuration (${input.reason.slice(0, 200)})`,
          });
        }
        return { changed };
      });
    },
  };
}
