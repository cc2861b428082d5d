// The chunk windows file: once a run's export has ended and its last chunks are in flight, what a
// chunk that ends held goes to those still writing. The run decides (it counts every share); this
// file tells the chunks, which read it while they write (AccountShare.follow). When another run
// waits for the account, what the ending chunks held is lent to it instead (the account's lock).
import type { ActivityDeps } from './deps';
import { AccountLocks, type GuestShare, type LockOwner } from '../runs/account-lock';
import { runFiles } from '../runs/files';
import { NotFoundError, type StoredBlob } from '../storage';
import { mapFailures } from './failures';
import { lentFraction } from './share-sizes';
import { withRunFolder, type WithEarlierFolderName } from './run-folder';

export interface ChunkWindowsInput {
  configurationId: string;
  /** The run's folder. */
  runFolder: string;
  /** Chunk number -> window: each of these chunks may take 1/window of the account from now on. */
  windows: Record<string, number>;
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
        await deps.stores.blobs.put(key, JSON.stringify({ windows: input.windows }));
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
    return typeof window === 'number' && Number.isInteger(window) && window >= 1 ? window : undefined;
  } catch (err) {
    if (err instanceof NotFoundError || err instanceof SyntaxError) return undefined;
    throw err;
  }
}
