import type { Connection } from '@temporalio/client';
import { ProcessorRegistry } from '../../src/processors/registry';
import type { Stores } from '../../src/storage';
import type { WebDeps } from '../../src/web/deps';
import { testPayloadKeys } from './temporal';

export function webDeps(
  stores: Stores,
  temporal: () => Promise<Connection>,
  extra: Partial<WebDeps> = {},
): WebDeps {
  return {
    stores,
    processors: new ProcessorRegistry([]),
    temporal,
    temporalNamespace: 'default',
    temporalUiUrl: 'http://localhost:8233',
    payloadKeys: testPayloadKeys,
    web: { publicUrl: 'http://localhost:3000', sessionSecret: 'x'.repeat(40), admin: {} },
    ...extra,
  };
}
