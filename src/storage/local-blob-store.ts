import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { link, mkdir, open, readdir, readFile, rename, stat, unlink } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { BlobStore, PutOptions, StoredBlob } from './blob-store';
import { assertValidKey, ConflictError, NotFoundError } from './errors';
import { lineBatches } from './lines';

const LOCK_WAIT_MS = 10_000;
/** A lock older than this was left by a crashed process and is broken. */
const STALE_LOCK_MS = 30_000;

export function etagOf(body: Buffer): string {
  return `"${createHash('md5').update(body).digest('hex')}"`;
}

/**
 * Blob store on the local file system. Objects live under `<dir>/objects/<key>`; every write goes
 * to `<dir>/tmp/` first and is renamed into place, so readers never see half a file. Conditional
 * writes hold a per-key lock file (O_EXCL), which also works across processes (worker, web, CLI).
 */
export class LocalBlobStore implements BlobStore {
  readonly description: string;
  private readonly objects: string;

  constructor(private readonly dir: string) {
    this.description = `local directory ${dir}`;
    this.objects = join(dir, 'objects');
  }

  private file(key: string): string {
    assertValidKey('blob', key);
    return join(this.objects, key);
  }

  async put(key: string, body: Buffer | string, options: PutOptions = {}): Promise<{ etag: string }> {
    const file = this.file(key);
    const data = typeof body === 'string' ? Buffer.from(body) : body;
    if (!options.ifMatch && !options.ifNoneMatch) return this.write(file, data);
    return this.withLock(key, async () => {
      const current = await this.currentEtag(file);
      if (options.ifNoneMatch && current !== undefined) throw new ConflictError('blob', key);
      if (options.ifMatch && current !== options.ifMatch) throw new ConflictError('blob', key);
      return this.write(file, data);
    });
  }

  async get(key: string): Promise<StoredBlob> {
    const file = this.file(key);
    try {
      const body = await readFile(file);
      return { body, etag: etagOf(body) };
    } catch (err) {
      if (isNotFound(err)) throw new NotFoundError('blob', key);
      throw err;
    }
  }

  async list(prefix: string): Promise<string[]> {
    const base = prefix.includes('/') ? prefix.slice(0, prefix.lastIndexOf('/')) : '';
    if (base) assertValidKey('blob', base);
    const keys: string[] = [];
    const walk = async (dir: string): Promise<void> => {
      for (const entry of await entriesOf(dir)) {
        const full = join(dir, entry.name);
        if (entry.isDirectory()) await walk(full);
        else {
          const key = relative(this.objects, full).split(sep).join('/');
          if (key.startsWith(prefix)) keys.push(key);
        }
      }
    };
    await walk(join(this.objects, base));
    return keys.sort();
  }

  /**
   * Walks the folders in key order, skipping those whose keys all sort before `after`, and stops
   * at `limit` keys: a page reads the folders on its way, not every key under the prefix.
   */
  async listPage(prefix: string, page: { after?: string; limit: number }): Promise<string[]> {
    const base = prefix.includes('/') ? prefix.slice(0, prefix.lastIndexOf('/')) : '';
    if (base) assertValidKey('blob', base);
    const { after, limit } = page;
    const keys: string[] = [];
    /** True once the page is full. `folder`: the key prefix of everything in `dir` ('' or 'a/b/'). */
    const walk = async (dir: string, folder: string): Promise<boolean> => {
      // A folder sorts as its keys do: 'a/...' after the file 'a-b', before the file 'a0'.
      const named = (await entriesOf(dir))
        .map((entry) => ({ entry, key: folder + entry.name + (entry.isDirectory() ? '/' : '') }))
        .sort((x, y) => (x.key < y.key ? -1 : x.key > y.key ? 1 : 0));
      for (const { entry, key } of named) {
        if (entry.isDirectory()) {
          if (!key.startsWith(prefix) && !prefix.startsWith(key)) continue;
          // Every key inside starts with `key`: all sort before `after` unless it starts so too.
          if (after !== undefined && key < after && !after.startsWith(key)) continue;
          if (await walk(join(dir, entry.name), key)) return true;
        } else if (key.startsWith(prefix) && (after === undefined || key > after)) {
          keys.push(key);
          if (keys.length >= limit) return true;
        }
      }
      return false;
    };
    if (limit > 0) await walk(join(this.objects, base), base ? `${base}/` : '');
    return keys;
  }

  async delete(key: string): Promise<void> {
    await removeFile(this.file(key));
  }

  async *readLines(key: string): AsyncIterable<string> {
    for await (const batch of this.readLineBatches(key)) yield* batch;
  }

  async *readLineBatches(key: string): AsyncIterable<string[]> {
    const file = this.file(key);
    try {
      await stat(file);
    } catch (err) {
      if (isNotFound(err)) throw new NotFoundError('blob', key);
      throw err;
    }
    const input = createReadStream(file);
    try {
      yield* lineBatches(input);
    } finally {
      input.destroy();
    }
  }

  private async write(file: string, data: Buffer): Promise<{ etag: string }> {
    const tmp = join(this.dir, 'tmp', `${process.pid}-${randomBytes(8).toString('hex')}`);
    const handle = await inDirectory(tmp, () => open(tmp, 'w'));
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await inDirectory(file, () => rename(tmp, file));
    return { etag: etagOf(data) };
  }

  private async currentEtag(file: string): Promise<string | undefined> {
    try {
      return etagOf(await readFile(file));
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  private async withLock<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const lock = join(this.dir, 'locks', `${encodeURIComponent(key)}.lock`);
    const deadline = Date.now() + LOCK_WAIT_MS;
    for (;;) {
      try {
        await (await inDirectory(lock, () => open(lock, 'wx'))).close();
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        const held = await stat(lock).catch(() => undefined);
        if (held && Date.now() - held.mtimeMs > STALE_LOCK_MS) await breakStale(lock, held);
        if (Date.now() > deadline) throw new Error(`timed out waiting for the write lock on blob ${key}`);
        await sleep(2 + Math.random() * 8);
      }
    }
    try {
      return await fn();
    } finally {
      await removeFile(lock);
    }
  }
}

/**
 * `op` on a path whose directory is made (with its parents) only when `op` says it is missing:
 * most writes go to directories that exist, and two mkdir calls per write took about a sixth of
 * a worker's main-thread time in file-system calls during the fleet's daily run (a CPU profile).
 */
async function inDirectory<T>(path: string, op: () => Promise<T>): Promise<T> {
  try {
    return await op();
  } catch (err) {
    if (!isNotFound(err)) throw err;
    await mkdir(dirname(path), { recursive: true });
    return op();
  }
}

/**
 * Breaks the lock judged stale (`judged`: the file as it was seen): moves it aside (a rename: of
 * the waiters that judged it, one moves it) and puts back what it moved if that was another file
 * (another inode or time: inodes are reused at once), a fresh lock a waiter took after another
 * broke the stale one. Deleting the path, as before 2026-12-06, could delete that fresh lock and
 * let a third waiter take the key too: two conditional writes both succeeding, two runs told they
 * hold one ESP account (3 in 5,000 trials of eight runs taking a lock left stale).
 */
export async function breakStale(lock: string, judged: { ino: number; mtimeMs: number }): Promise<void> {
  const aside = `${lock}.${randomBytes(6).toString('hex')}.stale`;
  try {
    await rename(lock, aside);
  } catch (err) {
    if (isNotFound(err)) return; // another waiter moved it
    throw err;
  }
  const moved = await stat(aside).catch(() => undefined);
  if (moved && (moved.ino !== judged.ino || moved.mtimeMs !== judged.mtimeMs)) {
    await link(aside, lock).catch(() => undefined);
  }
  await removeFile(aside);
}

/** Removes a file; one already gone is fine. */
async function removeFile(path: string): Promise<void> {
  try {
    await unlink(path);
  } catch (err) {
    if (!isNotFound(err)) throw err;
  }
}

export function isNotFound(err: unknown): boolean {
  return (err as NodeJS.ErrnoException)?.code === 'ENOENT';
}

/** A folder's entries; none when it does not exist. */
async function entriesOf(dir: string) {
  try {
    return await readdir(dir, { withFileTypes: true });
  } catch (err) {
    if (isNotFound(err)) return [];
    throw err;
  }
}
