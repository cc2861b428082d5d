import { Client, Connection } from '@temporalio/client';
import type { AppConfig } from '../config';

/** A client for CLI commands; `close` when done. */
export async function connectClient(
  config: AppConfig,
): Promise<{ client: Client; close: () => Promise<void> }> {
  let connection: Connection;
  try {
    connection = await Connection.connect({ address: config.temporal.address, connectTimeout: 5_000 });
  } catch {
    throw new Error(`Temporal is not reachable at ${config.temporal.address} (is \`npm start\` running?)`);
  }
  return {
    client: new Client({ connection, namespace: config.temporal.namespace }),
    close: () => connection.close(),
  };
}

/** The Web UI page of a workflow. */
export function workflowUrl(config: AppConfig, workflowId: string): string {
  return `${config.temporal.uiUrl}/namespaces/${encodeURIComponent(config.temporal.namespace)}/workflows/${encodeURIComponent(workflowId)}`;
}
