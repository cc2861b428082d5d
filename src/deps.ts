// Builds what activities, the web server and the CLI share from the configuration: stores, the ESP
// processor registry, the alert sender and the metrics registry.
import type { ActivityDeps } from './activities/deps';
import { createAlertSender } from './alerts';
import type { AppConfig } from './config';
import type { Logger } from './logger';
import { EspMetrics } from './metrics';
import { EspHttp } from './processors/http';
import { createProcessorRegistry } from './processors/registry';
import { RefreshLeases } from './processors/refresh-leases';
import { publisherUrl } from './publisher-link';
import { createStores } from './storage';

export function createDeps(config: AppConfig, log: Logger): ActivityDeps {
  const stores = createStores(config.storage);
  const metrics = new EspMetrics();
  return {
    stores,
    processors: createProcessorRegistry(
      {
        secrets: stores.secrets,
        metrics,
        http: new EspHttp(config.espTimeoutMs, metrics),
        refreshLeases: new RefreshLeases(stores.blobs),
      },
      config,
    ),
    alerts: createAlertSender(log, config.alertWebhookUrl, (id) =>
      publisherUrl(stores, config.web.publicUrl, id),
    ),
    alertRejectedPercent: config.alertRejectedPercent,
    metrics,
    log,
  };
}
