import { Connection } from '@temporalio/client';
import { loadConfigOrExit } from '../cli/load-config';
import { exitWhenSupervisorDies } from '../lib/orphan-guard';
import { createLogger } from '../logger';
import { createStores } from '../storage';
import { createApp } from './app';

const config = loadConfigOrExit();
const log = createLogger('web', config.logLevel);

let connection: Promise<Connection> | undefined;
function temporal(): Promise<Connection> {
  connection ??= Connection.connect({ address: config.temporal.address, connectTimeout: 3_000 }).catch(
    (err) => {
      connection = undefined; // retry on the next request
      throw err;
    },
  );
  return connection;
}

const app = createApp({ stores: createStores(config.storage), temporal });
const server = app.listen(config.web.port, config.web.host, () => {
  log.info({ url: `http://${config.web.host}:${config.web.port}` }, 'web server listening');
});
server.on('error', (err) => {
  console.error(`web server failed: ${err.message}`);
  process.exit(1);
});

function shutdown(): void {
  server.close(async () => {
    if (connection) await (await connection.catch(() => undefined))?.close();
    process.exit(0);
  });
  server.closeAllConnections();
}
process.once('SIGTERM', shutdown);
exitWhenSupervisorDies(shutdown);
process.once('SIGINT', shutdown);
