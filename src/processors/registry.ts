import type { AppConfig } from '../config';
import type { BaseProcessor, ProcessorDeps } from './base-processor';
import { SandboxProcessor } from './sandbox';

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

export function createProcessorRegistry(
  deps: ProcessorDeps,
  config: Pick<AppConfig, 'sandbox'>,
): ProcessorRegistry {
  const processors: BaseProcessor[] = [];
  if (config.sandbox.enabled) {
    processors.push(
      new SandboxProcessor(deps, {
        url: config.sandbox.url,
        rateLimit: config.sandbox.clientRateLimit,
        concurrency: config.sandbox.clientConcurrency,
      }),
    );
  }
  return new ProcessorRegistry(processors);
}
