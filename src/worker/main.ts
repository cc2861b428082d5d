// Worker entry point. SIGINT/SIGTERM at any moment end the process: during start-up at once (no
// work has started), once running by a graceful shutdown (polling stops, in-flight activities get
// ESPRESSO_SHUTDOWN_GRACE_MS to finish, then are cancelled and resume elsewhere).
import type { Server } from 'node:http';
import { DefaultLogger, NativeConnection, Runtime, type Worker } from '@temporalio/worker';
import { loadConfigOrExit } from '../load-config';
import { exitWhenSupervisorDies } from '../lib/orphan-guard';
import { createLogger } from '../logger';
import { loadPayloadKeys } from '../codec';
import { createDeps } from '../deps';
import { freePort } from '../lib/free-port';
import { serveMetrics } from '../metrics';
import { TASK_QUEUE } from '../temporal/constants';
import { registerSearchAttributes } from '../temporal/search-attributes';
import { createWorker } from '.';
import { keepFilesPrivate } from '../lib/private-files';

keepFilesPrivate();

async function main(): Promise<void> {
  const config = loadConfigOrExit();
  const log = createLogger('worker', config.logLevel);
  const running: { worker?: Worker; stopping?: boolean } = {};
  const stop = () => {
    running.stopping = true;
    if (running.worker?.getState() === 'RUNNING') running.worker.shutdown();
    else if (!running.worker) process.exit(0); // still starting: nothing to drain
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  exitWhenSupervisorDies(stop);
  // The SDK's runtime metrics go to a loopback port; /metrics on ESPRESSO_METRICS_PORT serves them
  // together with espresso's own.
  const sdkMetricsAddress = config.metrics ? `127.0.0.1:${await freePort()}` : undefined;
  Runtime.install({
    // Signals are handled above, also before a worker exists.
    shutdownSignals: [],
    // The SDK's own log (bundler output, worker state changes) only from warnings up, unless debugging.
    logger: new DefaultLogger(
      config.logLevel === 'debug' ? 'DEBUG' : config.logLevel === 'error' ? 'ERROR' : 'WARN',
    ),
    ...(sdkMetricsAddress
      ? {
          telemetryOptions: {
            metrics: { prometheus: { bindAddress: sdkMetricsAddress, countersTotalSuffix: true } },
          },
        }
      : {}),
  });
  const connection = await NativeConnection.connect({ address: config.temporal.address });
  let metricsServer: Server | undefined;
  try {
    try {
      const added = await registerSearchAttributes(connection.operatorService, config.temporal.namespace);
      if (added.length) log.info({ added }, 'registered search attributes');
    } catch (err) {
      // Temporal Cloud does not allow this call: attributes are created in its UI/tcld instead.
      log.warn({ err: (err as Error).message }, 'could not register search attributes');
    }
    const deps = createDeps(config, log);
    if (config.metrics && deps.metrics) {
      metricsServer = await serveMetrics(
        deps.metrics,
        config.metrics.host,
        config.metrics.port,
        `http://${sdkMetricsAddress}/metrics`,
      );
      log.info(
        { url: `http://${config.metrics.host}:${config.metrics.port}/metrics` },
        'metrics endpoint listening',
      );
    }
    const payloadKeys = await loadPayloadKeys(config.payloadKeys, deps.stores.secrets, { create: true });
    const worker = (running.worker = await createWorker({
      connection,
      namespace: config.temporal.namespace,
      payloadKeys,
      shutdownGraceTimeMs: config.shutdownGraceMs,
      allowPlaintextPayloads: config.allowPlaintextPayloads,
      ...deps,
    }));
    if (running.stopping) return;
    if (config.allowPlaintextPayloads)
      log.warn(
        'ESPRESSO_ALLOW_PLAINTEXT_PAYLOADS=true: this worker runs unencrypted payloads too (migrations only)',
      );
    log.info({ taskQueue: TASK_QUEUE, address: config.temporal.address }, 'worker started');
    await worker.run();
  } finally {
    await new Promise((resolve) => (metricsServer ? metricsServer.close(resolve) : resolve(undefined)));
    await connection.close();
    log.info('worker stopped');
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(`worker failed: ${(err as Error).message}`);
    process.exit(1);
  },
);
