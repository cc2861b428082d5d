import { Connection } from '@temporalio/client';
import { loadConfigOrExit } from '../load-config';
import { loadPayloadKeys } from '../codec';
import { createDeps } from '../deps';
import { loadOrCreateKeyFile } from '../lib/key-file';
import { closeOnShutdown } from '../lib/shutdown';
import { createLogger } from '../logger';
import { createApp } from './app';
import { PendingFlows } from './pending';
import { keepFilesPrivate } from '../lib/private-files';

keepFilesPrivate();

async function main(): Promise<void> {
  const config = loadConfigOrExit();
  const log = createLogger('web', config.logLevel);

  let connection: Promise<Connection> | undefined;
  const temporal = (): Promise<Connection> => {
    connection ??= Connection.connect({ address: config.temporal.address, connectTimeout: 3_000 }).catch(
      (err) => {
        connection = undefined; // retry on the next request
        throw err;
      },
    );
    return connection;
  };

  const { stores, processors, alerts } = createDeps(config, log);
  const app = createApp({
    payloadKeys: await loadPayloadKeys(config.payloadKeys, stores.secrets, { create: true }),
    stores,
    processors,
    alerts,
    temporal,
    temporalNamespace: config.temporal.namespace,
    temporalUiUrl: config.temporal.uiUrl,
    web: {
      publicUrl: config.web.publicUrl,
      sessionSecret: config.web.sessionSecret ?? (await loadOrCreateKeyFile(config.web.sessionSecretFile)),
      admin: config.web.admin,
      trustProxy: config.web.trustProxy,
    },
    log,
  });
  // Expired connect flows (and their secrets) are removed every minute.
  const stopSweeping = new PendingFlows(stores.blobs, stores.secrets).sweepEvery(60_000, log);
  const server = app.listen(config.web.port, config.web.host, () => {
    log.info({ url: config.web.publicUrl }, 'web server listening');
  });
  server.on('error', (err) => {
    console.error(`web server failed: ${err.message}`);
    process.exit(1);
  });

  closeOnShutdown(server, {
    afterClose: async () => {
      stopSweeping();
      if (connection) await (await connection.catch(() => undefined))?.close();
    },
  });
}

main().catch((err) => {
  console.error(`web failed: ${(err as Error).message}`);
  process.exit(1);
});
