// The chunk windows file: once a run's export has ended and its last chunks are in flight, what a
// chunk that ends held goes to those still writing. The run names them (it counts every share);
// this file tells the chunks, which read it while they write (AccountShare.follow). In runs that
// say so in the file (`sharedOnEnd`), a chunk whose last request is answered takes itself out and
// gives the others its share at once (shareEndedWindow), before the run learns that it ended. When
// another run waits for the account, what the ending chunks held is lent to it instead (the
// account's lock).
import type { ActivityDeps } from './deps';
import { AccountLocks, type GuestShare, type LockOwner } from '../runs/account-lock';
import { runFiles } from '../runs/files';
import { NotFoundError, type BlobStore, type StoredBlob } from '../storage';
import { changeJsonDocument } from '../storage/json-document';
import { mapFailures } from './failures';
import { lentFraction } from './share-sizes';
import { withRunFolder, type WithEarlierFolderName } from './run-folder';

export interface ChunkWindowsInput {
  configurationId: string;
  /** The run's folder. */
  runFolder: string;
  /** Chunk number -> window: each of these chunks may take 1/window of the account from now on. */
  windows: Record<string, number>;
  /**
   * The chunks named take themselves out of the file as they end, and give the others their
   * shares (shareEndedWindow): the file is changed, never replaced, and keeps no chunk that took
   * itself out. Runs of earlier versions do not say so.
   */
  sharedOnEnd?: boolean;
}

/** The file: chunk number -> window (every window the same in files the chunks change). */
interface ChunkWindowsFile {
  windows?: Record<string, unknown>;
  sharedOnEnd?: boolean;
}

export function createChunkWindowsActivities(deps: ActivityDeps) {
  return {
    /** Tells a run's chunks in flight their larger shares (only ever larger: see the run). */
    async shareChunkWindows(
      given: ChunkWindowsInput | WithEarlierFolderName<ChunkWindowsInput>,
    ): Promise<void> {
      return mapFailures(async () => {
        const input = withRunFolder(given);
        const key = runFiles.chunkWindows(input.configurationId, input.runFolder);
        if (!input.sharedOnEnd) {
          await deps.stores.blobs.put(key, JSON.stringify({ windows: input.windows }));
          return;
        }
        // A chunk that ended since the run counted it has taken itself out, and may have given
        // the others a smaller window than these: only the chunks in both, each the smaller.
        await changeJsonDocument<ChunkWindowsFile, void>(deps.stores.blobs, key, (saved) => {
          const before = saved?.sharedOnEnd ? sameWindows(saved.windows) : undefined;
          const windows: Record<string, number> = {};
          for (const [chunk, window] of Object.entries(input.windows)) {
            if (!before) windows[chunk] = window;
            else if (before.chunks.includes(chunk)) windows[chunk] = Math.min(window, before.window);
          }
          return { write: { windows, sharedOnEnd: true }, answer: undefined };
        });
      });
    },

    /**
     * Lends the run waiting for the account (`guest`, its workflow id) what the holder's chunks
     * do not use (nothing yet, at first), and names its last ones (`tail`) once they are in
     * flight; each adds its own as it ends. Answers whether that run is the account's guest.
     */
    async lendAccount(input: {
      lockKey: string;
      lock: LockOwner;
      guest: string;
      share: GuestShare;
      /** Its last chunks, in flight: each adds its share as it ends. */
      tail?: number[];
      /**
       * The account's ESP and the shares its chunks in flight hold (fractions): the guest is then
       * lent the whole requests they leave (lentFraction), at least `share.fraction`. Runs of
       * earlier versions send neither.
       */
      esp?: string;
      held?: number[];
    }): Promise<boolean> {
      const { lockKey, lock, guest, tail, esp, held } = input;
      return mapFailures(() => {
        let { share } = input;
        if (share.fraction > 0 && esp !== undefined && held !== undefined) {
          const free = lentFraction(deps.processors.get(esp).limits(), held);
          share = { ...share, fraction: Math.max(share.fraction, free) };
        }
        return new AccountLocks(deps.stores.blobs).lend(lockKey, lock, guest, share, tail);
      });
    },
  };
}

/**
 * A chunk's window in the run's chunk windows file; undefined when the file or its entry is not
 * there (yet) or does not parse: the chunk keeps the share it has.
 */
export async function readChunkWindow(
  get: (key: string) => Promise<StoredBlob>,
  key: string,
  chunk: number,
): Promise<number | undefined> {
  try {
    const saved = JSON.parse((await get(key)).body.toString('utf8')) as {
      windows?: Record<string, unknown>;
    };
    const window = saved.windows?.[String(chunk)];
    return isWindow(window) ? window : undefined;
  } catch (err) {
    if (err instanceof NotFoundError || err instanceof SyntaxError) return undefined;
    throw err;
  }
}

/**
 * A chunk named in its run's chunk windows file has had its last request answered (and its share
 * is not lent to the run waiting for the account): it takes itself out, and each chunk left may
 * take 1/(the chunks left) of the account, no more than it had. Only in files the run wrote for
 * that (`sharedOnEnd`), where every chunk has the same window: each chunk left then holds no more
 * than 1/(the chunks named), never fewer than those still writing. A retry changes nothing.
 */
export async function shareEndedWindow(blobs: BlobStore, key: string, chunk: number): Promise<void> {
  await changeJsonDocument<ChunkWindowsFile, void>(blobs, key, (saved) => {
    const named = saved?.sharedOnEnd ? sameWindows(saved.windows) : undefined;
    if (!named?.chunks.includes(String(chunk))) return { answer: undefined };
    const left = named.chunks.filter((c) => c !== String(chunk));
    if (left.length === 0) return { answer: undefined }; // the run's last chunk: none to give to
    const window = Math.max(1, Math.min(named.window, left.length));
    const windows = Object.fromEntries(left.map((c) => [c, window]));
    return { write: { windows, sharedOnEnd: true }, answer: undefined };
  });
}

/** The chunks a file names and their one window; undefined when they have not all the same. */
function sameWindows(windows: Record<string, unknown> | undefined) {
  const values = Object.values(windows ?? {});
  const window = values[0];
  if (!isWindow(window) || values.some((w) => w !== window)) return undefined;
  return { chunks: Object.keys(windows ?? {}), window };
}

function isWindow(w: unknown): w is number {
  return typeof w === 'number' && Number.isInteger(w) && w >= 1;
}
