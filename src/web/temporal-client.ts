import { Client } from '@temporalio/client';
import { dataConverter } from '../codec';
import type { WebDeps } from './deps';

/** A Temporal client that encrypts payloads like the worker does. */
export async function temporalClient(deps: WebDeps): Promise<Client> {
  return new Client({
    connection: await deps.temporal(),
    namespace: deps.temporalNamespace,
    dataConverter: dataConverter(deps.payloadKeys),
  });
}
