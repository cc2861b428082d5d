// Builds what activities, the web server and the CLI share from the configuration: stores, the ESP
// processor registry and the alert sender.
import type { ActivityDeps } from './activities';
import { createAlertSender } from './alerts';
import type { AppConfig } from './config';
import type { Logger } from './logger';
import { EspHttp } from './processors/http';
import { createProcessorRegistry } from './processors/registry';
import { createStores } from './storage';

export function createDeps(config: AppConfig, log: Logger): ActivityDeps {
  const stores = createStores(config.storage);
  return {
    stores,
    processors: createProcessorRegistry(
      { secrets: stores.secrets, http: new EspHttp(config.espTimeoutMs) },
      config,
    ),
    alerts: createAlertSender(log, config.alertWebhookUrl),
  };
}
