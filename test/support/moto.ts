import { spawn, type ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { resolveMotoServer } from '../../src/tools';
import { freePort } from './ports';

let server: Promise<{ endpoint: string; child: ChildProcess }> | undefined;

/** A real moto server (S3 + Secrets Manager over HTTP) for the run, started on first use. */
export async function motoEndpoint(): Promise<string> {
  server ??= (async () => {
    const bin = resolveMotoServer();
    if (!bin) throw new Error('moto_server not found: run `npm run bootstrap`');
    const port = await freePort();
    const child = spawn(bin, ['-H', '127.0.0.1', '-p', String(port)], { stdio: 'ignore' });
    const endpoint = `http://127.0.0.1:${port}`;
    for (let i = 0; i < 150; i++) {
      if (child.exitCode !== null) throw new Error(`moto_server exited with ${child.exitCode}`);
      try {
        await fetch(`${endpoint}/moto-api/`);
        return { endpoint, child };
      } catch {
        await sleep(100);
      }
    }
    child.kill();
    throw new Error('moto_server did not start within 15 s');
  })();
  return (await server).endpoint;
}

export async function stopMoto(): Promise<void> {
  if (!server) return;
  const started = await server.catch(() => undefined);
  server = undefined;
  started?.child.kill();
}

/** Fake credentials for the emulator, so the AWS SDK never looks at the machine's own. */
export const motoCredentials = { accessKeyId: 'testing', secretAccessKey: 'testing' };
