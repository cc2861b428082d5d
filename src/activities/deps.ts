// What every activity is given (stores, processors, alerts), and a configuration's processor and
// target: imported by each activity module, and by the index that assembles them.
import type { AlertSender } from '../alerts';
import type { Logger } from '../logger';
import type { EspMetrics } from '../metrics';
import type { ProcessorRegistry } from '../processors/registry';
import type { ProcessorTarget } from '../processors/types';
import type { Configuration, Stores } from '../storage';

export interface ActivityDeps {
  stores: Stores;
  processors: ProcessorRegistry;
  alerts: AlertSender;
  /** ESPRESSO_ALERT_REJECTED_PERCENT; default DEFAULT_ALERT_REJECTED_PERCENT. */
  alertRejectedPercent?: number;
  metrics?: EspMetrics;
  /** Structured log of runs (pino); redacts secrets and emails itself. */
  log?: Logger;
  /** The export's clock: when its chunks and parts close (Date.now; tests drive it). */
  clock?: () => number;
}

/** A configuration with the processor for its ESP and what that processor needs of it. */
export async function loadTarget(deps: ActivityDeps, configurationId: string) {
  const configuration = await deps.stores.configurations.get(configurationId);
  const processor = deps.processors.get(configuration.esp);
  return { configuration, processor, target: toTarget(configuration) };
}

export function toTarget(c: Configuration): ProcessorTarget {
  return {
    id: c.id,
    esp: c.esp,
    espAccountId: c.espAccountId,
    espListId: c.espListId,
    fieldName: c.fieldName,
    credentialsSecretId: c.credentialsSecretId,
    apiBaseUrl: c.apiBaseUrl,
  };
}
