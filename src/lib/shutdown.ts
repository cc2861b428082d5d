import type { Server } from 'node:http';
import { exitWhenSupervisorDies } from './orphan-guard';

/**
 * Stops an HTTP server on SIGTERM, SIGINT or when the supervisor is gone, once: `beforeClose`
 * runs first (e.g. save state), then the server closes its connections, then `afterClose`, then exit.
 */
export function closeOnShutdown(
  server: Server,
  hooks: { beforeClose?: () => Promise<void>; afterClose?: () => Promise<void> } = {},
): void {
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    await hooks.beforeClose?.();
    server.close(async () => {
      await hooks.afterClose?.();
      process.exit(0);
    });
    server.closeAllConnections();
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  exitWhenSupervisorDies(stop);
}
