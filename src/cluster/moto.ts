// moto, the S3 + Secrets Manager emulator of `espresso cluster`. moto keeps its state in memory:
// its recorder appends every request to a file, and the next start replays that file, so
// configurations, credentials and run files survive a restart.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { say, type ProcessSpec } from '../lib/supervise';
import { resolveMotoServer } from '../tools';

export function motoProcess(
  port: number,
  bucket: string,
  recording: string,
  logFile: string,
  pidFile: string,
): ProcessSpec {
  const bin = resolveMotoServer();
  if (!bin) throw new Error('moto_server not found under .tools/venv: run `npm run bootstrap`');
  return {
    name: 'moto',
    command: bin,
    args: ['-H', '127.0.0.1', '-p', String(port)],
    env: { ...process.env, MOTO_ENABLE_RECORDING: 'true', MOTO_RECORDER_FILEPATH: recording },
    logFile,
    pidFile,
    // A moto that crashed lost its state with it: the recording brings it back.
    afterRestart: () => prepareMoto(`http://127.0.0.1:${port}`, recording, bucket),
  };
}

/** Waits for moto, replays what earlier runs recorded, and makes sure the bucket exists. */
export async function prepareMoto(endpoint: string, recording: string, bucket: string): Promise<void> {
  for (let i = 0; ; i++) {
    try {
      await fetch(`${endpoint}/moto-api/`, { signal: AbortSignal.timeout(2_000) });
      break;
    } catch {
      if (i > 150) throw new Error(`moto did not answer at ${endpoint} within 30 s`);
      await sleep(200);
    }
  }
  if (existsSync(recording) && statSync(recording).size > 0) {
    const started = Date.now();
    const replayed = await fetch(`${endpoint}/moto-api/recorder/replay-recording`, { method: 'POST' });
    if (!replayed.ok) throw new Error(`moto could not replay ${recording}: HTTP ${replayed.status}`);
    const requests = readFileSync(recording, 'utf8').split('\n').length - 1;
    say(`moto: replayed ${requests} recorded requests (${recording}) in ${Date.now() - started} ms`);
  }
  // S3 CreateBucket is a PUT on the bucket's path; 409 when this account has it already.
  const created = await fetch(`${endpoint}/${bucket}`, { method: 'PUT' });
  if (!created.ok && created.status !== 409)
    throw new Error(`moto: creating bucket ${bucket}: HTTP ${created.status}`);
}
