// moto, the S3 + Secrets Manager emulator of `espresso cluster`. moto keeps its state in memory:
// its recorder appends every request to a file, and the next start replays that file, so
// configurations, credentials and run files survive a restart. It runs as moto_server.py (beside
// this file), which keeps two requests at once from interleaving their lines in the recording.
import { appendFileSync, existsSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { say, type ProcessSpec } from '../lib/supervise';
import { projectRoot } from '../paths';
import { resolveMotoPython } from '../tools';

export function motoProcess(
  port: number,
  bucket: string,
  recording: string,
  logFile: string,
  pidFile: string,
): ProcessSpec {
  const python = resolveMotoPython();
  if (!python) throw new Error('moto_server not found under .tools/venv: run `npm run bootstrap`');
  return {
    name: 'moto',
    command: python,
    args: [join(projectRoot, 'src', 'cluster', 'moto_server.py'), '-H', '127.0.0.1', '-p', String(port)],
    env: { ...process.env, MOTO_ENABLE_RECORDING: 'true', MOTO_RECORDER_FILEPATH: recording },
    logFile,
    pidFile,
    // A request cut off by a crash would swallow the next one recorded after it.
    beforeStart: () => setAsideUnreadable(recording),
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

/**
 * Moves the lines of the recording that are not whole requests (one cut off when moto was killed
 * while writing it) to moto-recording.unreadable.jsonl, so moto replays the rest instead of
 * failing on them. moto records a request before it answers it, so a cut-off request was never
 * answered: no client saw it succeed. Runs before moto starts: a request recorded after a cut-off
 * line would otherwise join it and be lost with it.
 */
export function setAsideUnreadable(recording: string): void {
  if (!existsSync(recording)) return;
  const lines = readFileSync(recording, 'utf8').split('\n');
  const readable: string[] = [];
  const unreadable: number[] = [];
  lines.forEach((line, i) => {
    if (!line.trim()) return;
    if (isRecordedRequest(line)) readable.push(line);
    else unreadable.push(i);
  });
  if (!unreadable.length) return;
  const aside = recording.replace(/(\.jsonl)?$/, '.unreadable.jsonl');
  appendFileSync(aside, unreadable.map((i) => `${lines[i]}\n`).join(''), { mode: 0o600 });
  writeFileSync(`${recording}.tmp`, readable.map((line) => `${line}\n`).join(''), { mode: 0o600 });
  renameSync(`${recording}.tmp`, recording);
  say(
    `moto: set aside ${unreadable.length} unreadable line(s) of ${recording} (line ${unreadable
      .map((i) => i + 1)
      .join(
        ', ',
      )}: a request cut off while it was written) in ${aside}; replaying the other ${readable.length}`,
  );
}

function isRecordedRequest(line: string): boolean {
  try {
    const entry = JSON.parse(line) as { method?: unknown; url?: unknown } | null;
    return typeof entry?.method === 'string' && typeof entry.url === 'string';
  } catch {
    return false;
  }
}
