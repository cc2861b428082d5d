import { createServer } from 'node:net';

/** Below Linux's ephemeral range (32768-60999), where servers pick their own random ports. */
const RANGE = { from: 20_000, to: 32_000 };

/**
 * A TCP port on 127.0.0.1 that was free a moment ago (tests, benchmark). Chosen outside the
 * ephemeral range: a port handed out by the OS and released could be handed out again to a
 * server that binds port 0 (the Temporal dev server does, for its internal services) before
 * its new owner binds it.
 */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const port = RANGE.from + Math.floor(Math.random() * (RANGE.to - RANGE.from));
    if (await isFree(port)) return port;
  }
  throw new Error(`no free port found in ${RANGE.from}-${RANGE.to}`);
}

function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}
