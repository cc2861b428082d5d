import { Client, Connection } from '@temporalio/client';
import { dataConverter, loadPayloadKeys, type PayloadKeys } from '../codec';
import type { AppConfig } from '../config';
import { createStores, type SecretStore } from '../storage';

/** A client for CLI commands, encrypting payloads like the worker; `close` when done. */
export async function connectClient(
  config: AppConfig,
  secrets: SecretStore = createStores(config.storage).secrets,
): Promise<{ client: Client; payloadKeys: PayloadKeys; close: () => Promise<void> }> {
  const payloadKeys = await loadPayloadKeys(config.payloadKeys, secrets);
  let connection: Connection;
  try {
    connection = await Connection.connect({ address: config.temporal.address, connectTimeout: 5_000 });
  } catch {
    throw new Error(`Temporal is not reachable at ${config.temporal.address} (is \`npm start\` running?)`);
  }
  return {
    client: new Client({
      connection,
      namespace: config.temporal.namespace,
      dataConverter: dataConverter(payloadKeys),
    }),
    payloadKeys,
    close: () => connection.close(),
  };
}

/** The Web UI page of a workflow. */
export function workflowUrl(config: AppConfig, workflowId: string): string {
  return `${config.temporal.uiUrl}/namespaces/${encodeURIComponent(config.temporal.namespace)}/workflows/${encodeURIComponent(workflowId)}`;
}
