// Export files and error reports live behind links the ESP's answer hands out (pre-signed, on
// another host): fetched without the API key or pacing, after the link check of file-links.ts,
// never following a redirect. Whole files go to a temp file (gunzipped when gzipped); a page of a
// remote file is read by HTTP Range.
import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { open, rename, rm } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream } from 'node:stream/web';
import { createGunzip } from 'node:zlib';
import { RequestRejectedError, TransientError } from '../errors';
import { fileLink, refuseRedirect } from '../file-links';

export interface FileLink {
  url: string;
  /** What the file is, for messages: "the SendGrid export file". */
  what: string;
  /** The ESP API's base URL (links to its own origin are allowed: the test fakes). */
  apiBase: string;
  timeoutMs: number;
  /** The activity's cancellation: the download stops (a 60-minute export file would go on). */
  signal?: AbortSignal;
}

/** The link's answer (any status but a redirect); a failed connection is a TransientError. */
export async function fetchLink(link: FileLink, headers: Record<string, string> = {}): Promise<Response> {
  const url = fileLink(link.url, link.what, link.apiBase);
  let res: Response;
  try {
    const timeout = AbortSignal.timeout(link.timeoutMs);
    const signal = link.signal ? AbortSignal.any([timeout, link.signal]) : timeout;
    res = await fetch(url, { headers, redirect: 'manual', signal });
  } catch {
    link.signal?.throwIfAborted();
    throw new TransientError(`${link.what} could not be downloaded`);
  }
  await refuseRedirect(res, link.what);
  return res;
}

/** A small file's text (an error report). */
export async function downloadText(link: FileLink): Promise<string> {
  const res = await fetchLink(link);
  try {
    if (!res.ok) throw new Error(String(res.status));
    return await res.text();
  } catch {
    link.signal?.throwIfAborted();
    throw new TransientError(`${link.what} could not be downloaded`);
  }
}

/**
 * Downloads a file to `dest`, gunzipped when gzipped. Written under a temporary name beside it
 * (`dest` and a suffix: a sweep of `dest`'s prefix finds it) and renamed, so a partial download is
 * never read.
 */
export async function downloadToFile(link: FileLink, dest: string): Promise<void> {
  const res = await fetchLink(link);
  if (!res.ok || !res.body) {
    await res.body?.cancel();
    if (res.status >= 500) throw new TransientError(`${link.what} download answered ${res.status}`);
    throw new RequestRejectedError(`${link.what} is not available (${res.status}); start again`);
  }
  const part = `${dest}-${randomBytes(8).toString('hex')}.part`;
  const plain = `${part}.plain`;
  try {
    await pipeline(Readable.fromWeb(res.body as ReadableStream), createWriteStream(part));
    if (await isGzip(part)) {
      await pipeline(createReadStream(part), createGunzip(), createWriteStream(plain));
      await rename(plain, dest);
    } else {
      await rename(part, dest);
    }
  } catch (err) {
    link.signal?.throwIfAborted();
    if (err instanceof TransientError) throw err;
    throw new TransientError(`${link.what} download was cut off or is not valid gzip`);
  } finally {
    await rm(part, { force: true });
    await rm(plain, { force: true });
  }
}

async function isGzip(path: string): Promise<boolean> {
  const head = Buffer.alloc(2);
  const fh = await open(path, 'r');
  await fh.read(head, 0, 2, 0).finally(() => fh.close());
  return head[0] === 0x1f && head[1] === 0x8b;
}
