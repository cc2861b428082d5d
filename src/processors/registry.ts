import type { AppConfig } from '../config';
import type { BaseProcessor, ProcessorDeps } from './base-processor';
import { BrevoProcessor } from './brevo';
import { BeehiivProcessor } from './beehiiv';
import { HubSpotProcessor } from './hubspot';
import { IterableProcessor } from './iterable';
import { KitProcessor } from './kit-esp';
import { KlaviyoProcessor } from './klaviyo';
import { MailchimpProcessor } from './mailchimp';
import { SandboxProcessor } from './sandbox';
import { SendGridProcessor } from './sendgrid';

export class UnknownEspError extends Error {
  override name = 'UnknownEspError';
  constructor(readonly esp: string) {
    super(`unknown ESP ${JSON.stringify(esp)}`);
  }
}

/** Every ESP espresso can connect, by id. */
export class ProcessorRegistry {
  private readonly byId = new Map<string, BaseProcessor>();

  constructor(processors: BaseProcessor[]) {
    for (const p of processors) this.byId.set(p.descriptor.id, p);
  }

  get(esp: string): BaseProcessor {
    const processor = this.byId.get(esp);
    if (!processor) throw new UnknownEspError(esp);
    return processor;
  }

  list(): BaseProcessor[] {
    return [...this.byId.values()];
  }
}

/** Every ESP publishers can connect, in the order the web page lists them; the Sandbox when enabled. */
export function createProcessorRegistry(
  deps: ProcessorDeps,
  config: Pick<AppConfig, 'sandbox' | 'oauthApps'>,
): ProcessorRegistry {
  const processors: BaseProcessor[] = [
    new MailchimpProcessor(deps, { oauth: config.oauthApps.mailchimp }),
    new HubSpotProcessor(deps, { oauth: config.oauthApps.hubspot }),
    new KlaviyoProcessor(deps),
    new SendGridProcessor(deps),
    new IterableProcessor(deps),
    new KitProcessor(deps, { oauth: config.oauthApps.kit }),
    new BrevoProcessor(deps),
    new BeehiivProcessor(deps, { oauth: config.oauthApps.beehiiv }),
  ];
  if (config.sandbox.enabled) {
    processors.push(new SandboxProcessor(deps, { url: config.sandbox.url, ...config.sandbox.client }));
  }
  return new ProcessorRegistry(processors);
}
