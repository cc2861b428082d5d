// A listing page of an export is a run of whole lines, read from where the previous page stopped:
// by byte offset in a downloaded file (SendGrid), or by HTTP Range in the remote file (Iterable).
// The cursor carries the offset, so any worker reads the next page and nothing is held in memory.
import { open, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { RequestRejectedError, TransientError } from '../errors';
import { fetchLink, type FileLink } from './file-download';

export interface LinesPage {
  lines: string[];
  /** The byte offset after the last line returned. */
  next: number;
  /** The file has no lines after `next`. */
  end: boolean;
}

/** Up to `max` non-empty lines of a local file from byte `offset`. */
export async function readFileLines(path: string, offset: number, max: number): Promise<LinesPage> {
  const fh = await open(path, 'r');
  try {
    const size = (await fh.stat()).size;
    const buf = Buffer.alloc(256 * 1024);
    const lines: string[] = [];
    let pos = offset;
    let next = offset;
    let carry = Buffer.alloc(0);
    while (lines.length < max && pos < size) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
      if (bytesRead === 0) break;
      pos += bytesRead;
      const data = Buffer.concat([carry, buf.subarray(0, bytesRead)]);
      let from = 0;
      for (let nl = data.indexOf(10); lines.length < max && nl !== -1; nl = data.indexOf(10, from)) {
        const line = data.toString('utf8', from, nl).trim();
        if (line) lines.push(line);
        from = nl + 1;
      }
      next += from;
      carry = Buffer.from(data.subarray(from));
    }
    // A last line without a newline.
    if (lines.length < max && pos >= size && carry.length) {
      const line = carry.toString('utf8').trim();
      if (line) lines.push(line);
      next += carry.length;
    }
    return { lines, next, end: next >= size };
  } finally {
    await fh.close();
  }
}

/**
 * The whole lines within about `bytes` of a remote file from byte `offset`. `onExpired` runs when
 * the link no longer answers with the file (a signed link that expired).
 */
export async function readRemoteLines(
  link: FileLink,
  offset: number,
  bytes: number,
  onExpired: () => void,
): Promise<LinesPage> {
  try {
    const res = await fetchLink(link, { range: `bytes=${offset}-${offset + bytes - 1}` });
    if (res.status === 416) return { lines: [], next: offset, end: true };
    if (res.status !== 200 && res.status !== 206) {
      onExpired();
      throw new TransientError(`${link.what} answered ${res.status}`);
    }
    const buf = await readBody(res, res.status === 200 ? offset : 0, bytes);
    const total =
      res.status === 206 ? Number(/\/(\d+)$/.exec(res.headers.get('content-range') ?? '')?.[1]) : NaN;
    const end = buf.length < bytes || (Number.isFinite(total) && offset + buf.length >= total);
    const cut = end ? buf.length : buf.lastIndexOf(0x0a) + 1;
    if (cut === 0) throw new TransientError(`a line of ${link.what} is longer than one page`);
    const lines = buf
      .subarray(0, cut)
      .toString('utf8')
      .split('\n')
      .filter((l) => l.trim() !== '');
    return { lines, next: offset + cut, end };
  } catch (err) {
    link.signal?.throwIfAborted();
    if (err instanceof TransientError || err instanceof RequestRejectedError) throw err;
    throw new TransientError(`${link.what} download failed (${(err as Error).name})`);
  }
}

/** Up to `want` bytes after skipping `skip` (when the server ignored the Range header). */
async function readBody(res: Response, skip: number, want: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let have = 0;
  let skipped = 0;
  const reader = res.body!.getReader();
  try {
    while (have < want) {
      const { done, value } = await reader.read();
      if (done) break;
      let chunk = Buffer.from(value);
      if (skipped < skip) {
        const drop = Math.min(skip - skipped, chunk.length);
        skipped += drop;
        chunk = chunk.subarray(drop);
      }
      if (chunk.length) {
        chunks.push(chunk.subarray(0, want - have));
        have += Math.min(chunk.length, want - have);
      }
    }
  } finally {
    await reader.cancel().catch(() => undefined);
  }
  return Buffer.concat(chunks);
}

export async function fileExists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/** Removes files named `prefix…` in `dir` older than `maxAgeMs` (left behind by crashed workers). */
export async function sweepStaleFiles(dir: string, prefix: string, maxAgeMs: number): Promise<void> {
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    if (!name.startsWith(prefix)) continue;
    const file = join(dir, name);
    const info = await stat(file).catch(() => undefined);
    if (info && Date.now() - info.mtimeMs > maxAgeMs) await rm(file, { force: true });
  }
}
