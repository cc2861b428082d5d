// `espresso cluster` (what `npm run cluster` runs): the production topology on one machine, without
// Docker. PostgreSQL, a self-hosted Temporal server on it, its Web UI, moto as S3 + Secrets Manager,
// N worker processes, the web server and the Sandbox, supervised like `espresso start` and stopped in the
// reverse order on Ctrl-C or SIGTERM. State lives in <data dir>/cluster and survives restarts.
import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { sayReady, startApplication } from '../cli/start';
import { codecEndpoint } from '../codec';
import { loadOrCreateKeyFile } from '../lib/key-file';
import { loadConfigOrExit } from '../load-config';
import { waitUntilReachable } from '../temporal/dev-server';
import { assertPortFree, claimDataDir, say, splitAddress, Supervisor, waitForHttp } from '../lib/supervise';
import { motoProcess, prepareMoto } from './moto';
import { postgresProcess, preparePostgres, provisionPostgres, waitForPostgres } from './postgres';
import {
  prepareNamespace,
  provisionTemporalServer,
  serverArgs,
  setUpSchemas,
  temporalPorts,
  temporalServerBin,
  TEMPORAL_SERVER_VERSION,
  writeServerConfig,
} from './temporal-server';
import { provisionWebUi, TEMPORAL_UI_VERSION, webUiBin, webUiProcess, writeWebUiConfig } from './web-ui';

/** The command's defaults; docker-compose.yml uses the same ports and bucket (test/compose.test.ts). */
export const CLUSTER_DEFAULTS = { workers: 3, postgresPort: 55432, motoPort: 5000, bucket: 'espresso' };

/**
 * What the cluster needs installed before it can start, provided when missing: PostgreSQL's
 * binaries, the Temporal server and its SQL tool, the Web UI server (minutes on a fresh machine;
 * nothing once they are there).
 */
export function provisionCluster(): void {
  provisionPostgres();
  provisionTemporalServer();
  provisionWebUi();
}

export interface ClusterOptions {
  workers: number;
  postgresPort: number;
  motoPort: number;
}

export async function cluster(options: ClusterOptions): Promise<void> {
  const motoEndpoint = `http://127.0.0.1:${options.motoPort}`;
  // Every process of the topology, and the CLI through the env file below, uses moto's S3 and
  // Secrets Manager with the emulator's fake credentials.
  Object.assign(process.env, {
    ESPRESSO_STORAGE: 'aws',
    ESPRESSO_S3_BUCKET: process.env.ESPRESSO_S3_BUCKET || CLUSTER_DEFAULTS.bucket,
    ESPRESSO_AWS_ENDPOINT: motoEndpoint,
    AWS_ACCESS_KEY_ID: 'emulator',
    AWS_SECRET_ACCESS_KEY: 'emulator',
    ESPRESSO_TEMPORAL_EMBEDDED: 'false',
    // The AWS SDK's notice about future Node versions, printed once by every process otherwise.
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
  });
  const config = loadConfigOrExit();
  const dataDir = resolve(config.dataDir);
  const clusterDir = join(dataDir, 'cluster');
  const logDir = join(clusterDir, 'logs');
  const runDir = join(dataDir, 'run');
  await mkdir(logDir, { recursive: true });
  await mkdir(runDir, { recursive: true });
  const pidFiles = {
    temporal: join(runDir, 'cluster-temporal.pid'),
    webUi: join(runDir, 'cluster-temporal-ui.pid'),
    moto: join(runDir, 'cluster-moto.pid'),
    postgres: join(runDir, 'cluster-postgresql.pid'),
  };
  await claimDataDir('cluster', runDir, [
    { name: 'Temporal server', pidFile: pidFiles.temporal, commandIncludes: temporalServerBin },
    { name: 'Temporal Web UI', pidFile: pidFiles.webUi, commandIncludes: webUiBin },
    { name: 'moto server', pidFile: pidFiles.moto, commandIncludes: 'moto_server' },
    { name: 'PostgreSQL', pidFile: pidFiles.postgres, commandIncludes: join(clusterDir, 'postgresql') },
  ]);
  const supervisor = new Supervisor(runDir);

  try {
    const [ip, frontendPort] = splitAddress(config.temporal.address);
    await assertPortFree('127.0.0.1', options.postgresPort, '--postgres-port');
    await assertPortFree('127.0.0.1', options.motoPort, '--moto-port');
    for (const ports of Object.values(temporalPorts(frontendPort))) {
      for (const port of [ports.grpc, ports.membership]) {
        await assertPortFree(ip, port, `TEMPORAL_ADDRESS (the server also listens on ${port})`);
      }
    }
    await assertPortFree(ip, config.temporal.uiPort, 'ESPRESSO_TEMPORAL_UI_PORT');
    provisionCluster();

    const postgres = await preparePostgres(clusterDir, options.postgresPort);
    say(`starting PostgreSQL on 127.0.0.1:${options.postgresPort} (data in ${postgres.dataDir})`);
    const pg = supervisor.start(postgresProcess(postgres, join(logDir, 'postgresql.log'), pidFiles.postgres));
    await waitForPostgres(postgres, 60_000, pg.exited());
    setUpSchemas(postgres.db, join(clusterDir, 'schema-version'));

    const serverConfig = join(clusterDir, 'temporal.yaml');
    await writeServerConfig(serverConfig, { ip, frontendPort, db: postgres.db });
    say(`starting Temporal server v${TEMPORAL_SERVER_VERSION} on ${config.temporal.address}`);
    const temporal = supervisor.start({
      name: 'Temporal server',
      command: temporalServerBin,
      args: serverArgs(serverConfig),
      logFile: join(logDir, 'temporal.log'),
      pidFile: pidFiles.temporal,
    });
    const failed = temporal.exited().then(() => {
      throw new Error(`the Temporal server exited while starting; see ${join(logDir, 'temporal.log')}`);
    });
    await Promise.race([waitUntilReachable(config.temporal.address, 120_000), failed]);
    await prepareNamespace(config.temporal.address, config.temporal.namespace);

    const uiDir = join(clusterDir, 'temporal-ui');
    await writeWebUiConfig(uiDir, {
      temporalAddress: config.temporal.address,
      host: ip,
      port: config.temporal.uiPort,
      namespace: config.temporal.namespace,
      // The web server's codec route, as the dev server's UI has it (src/cli/start.ts).
      codecEndpoint: codecEndpoint(
        config.web.publicUrl,
        config.web.sessionSecret ?? (await loadOrCreateKeyFile(config.web.sessionSecretFile)),
      ),
    });
    say(`starting the Temporal Web UI v${TEMPORAL_UI_VERSION} on ${ip}:${config.temporal.uiPort}`);
    supervisor.start(webUiProcess(uiDir, join(logDir, 'temporal-ui.log'), pidFiles.webUi));
    await waitForHttp(`http://${ip}:${config.temporal.uiPort}/`, 60_000);

    const recording = join(clusterDir, 'moto-recording.jsonl');
    say(`starting moto (S3 + Secrets Manager) on ${motoEndpoint}`);
    const bucket = process.env.ESPRESSO_S3_BUCKET!;
    supervisor.start(
      motoProcess(options.motoPort, bucket, recording, join(logDir, 'moto.log'), pidFiles.moto),
    );
    await prepareMoto(motoEndpoint, recording, bucket);

    const envFile = join(clusterDir, 'env');
    await writeEnvFile(envFile, dataDir);
    await startApplication(supervisor, config, { workers: options.workers });
    sayReady(config, [
      `  Temporal Web UI        ${config.temporal.uiUrl}`,
      `  PostgreSQL             127.0.0.1:${options.postgresPort} (user temporal, password in ${join(clusterDir, 'postgres.password')})`,
      `  S3 + Secrets Manager   ${motoEndpoint} (moto; bucket ${bucket})`,
      `  workers                ${options.workers}`,
      `  logs                   ${logDir} (PostgreSQL, Temporal, Web UI, moto); workers, web and Sandbox: this terminal`,
      `  CLI environment        set -a; . ${envFile}; set +a`,
    ]);
  } catch (err) {
    console.error(`[espresso] cluster failed: ${(err as Error).message}`);
    await supervisor.stopAll(1);
  }
}

/** What the `espresso` CLI needs to talk to this topology (storage, Temporal, data dir, ports). */
async function writeEnvFile(file: string, dataDir: string): Promise<void> {
  const names = [
    'ESPRESSO_STORAGE',
    'ESPRESSO_S3_BUCKET',
    'ESPRESSO_AWS_ENDPOINT',
    'AWS_ACCESS_KEY_ID',
    'AWS_SECRET_ACCESS_KEY',
    'ESPRESSO_TEMPORAL_EMBEDDED',
    'TEMPORAL_ADDRESS',
    'TEMPORAL_NAMESPACE',
    'ESPRESSO_WEB_PORT',
    'ESPRESSO_SANDBOX_PORT',
  ];
  const lines = [`ESPRESSO_DATA_DIR=${dataDir}`];
  for (const name of names) if (process.env[name]) lines.push(`${name}=${process.env[name]}`);
  await writeFile(
    file,
    `# Written by \`espresso cluster\`: the environment of its CLI.\n${lines.join('\n')}\n`,
  );
}
