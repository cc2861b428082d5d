// The export activities: a run's contacts that need a value, listed from the ESP into chunk files
// of its folder (export-listing.ts), resumable from the folder's progress file (export-folder.ts).
import { Context } from '@temporalio/activity';
import type { ActivityDeps } from './deps';
import { loadTarget } from './deps';
import type { ListMode } from '../processors/types';
import type { LockOwner } from '../runs/account-lock';
import { CorruptDataError } from '../storage';
import type { ExportManifest } from '../runs/files';
import { AccountShare } from './account-share';
import { ExportFolder, type ExportProgress } from './export-folder';
import { listIntoChunks } from './export-listing';
import { mapFailures } from './failures';
import { withRunFolder, type WithEarlierFolderName } from './run-folder';
import { runLog } from './run-log';
import { exportSlotsGiven, PAGES_AT_ONCE } from './share-sizes';
import { HEARTBEAT_EVERY_MS } from './update-chunk';
import { KeptSeenIds } from './seen-ids';

export interface ExportInput {
  configurationId: string;
  /** The run's folder under runs/<configurationId>/ (e.g. 2026-11-28 or 2026-11-28_manual-080503-k3f2). */
  runFolder: string;
  mode: ListMode;
  /**
   * Redispatch: instead of giving new values, write again the values of this earlier run's folder
   * to its contacts that were not updated then and still hold no value in the ESP now.
   */
  retryOf?: string;
  /** A dry run's export: marked so, so it is never written to the ESP. */
  dryRun?: boolean;
  /**
   * A full listing that gives new values to the contacts holding a value espresso would not write
   * itself (each chunk line keeps the value it replaces as `previous`). Asked for by an operator only.
   */
  replaceForeignValues?: boolean;
  /** Daily maintenance first (credentials, the field; a dry run only reports what it would do). */
  maintain?: boolean;
  /** The run's account lock (runs of earlier versions hold none). */
  lock?: LockOwner;
}

/** What the export returns: its manifest, and the maintenance done first. */
export type ExportResult = ExportManifest & { maintenanceMs?: number };

/** One part of an export whose chunks the run updates while the listing goes on. */
export interface ExportPartInput extends ExportInput {
  /** The part ends once this many more chunk files are final (a redispatch's export never does). */
  stopAfterChunks: number;
  /** Chunk updates run beside this part: it takes the export's part of the account, not all of it. */
  besideChunks?: boolean;
  /**
   * Beside this part at most this many chunk updates run, each with 1/chunksBeside of what the
   * export leaves: until it has made that many chunk files, it uses the shares of the others.
   */
  chunksBeside?: number;
  /** With chunksBeside: no chunk beside this part takes more than 1/chunksAfter of any limit. */
  chunksAfter?: number;
  /**
   * Requests this part keeps in flight beside the chunks (share-sizes.ts, exportSlots): up to
   * PAGES_AT_ONCE pages on their way at once when the ESP pages by offset. Default one.
   */
  exportSlots?: number;
}

/** Where a part left the export: chunk files 1..chunkCount are final; or the finished export. */
export type ExportPartResult =
  | { done: false; chunkCount: number; contacts: number }
  | ({
      done: true;
      /** Beside chunk updates: how long before its end it sent its last request. */
      quietMs?: number;
    } & ExportResult);

/** What a worker keeps of the ids exports have seen, between their parts (KeptSeenIds). */
const KEEP_SEEN = { keepMs: 2 * 60_000, maxIds: 4_000_000 };

export function createExportActivities(deps: ActivityDeps) {
  const { blobs } = deps.stores;
  /**
   * The ids a part of an export has seen, for the next part when this worker runs it (a cache:
   * another worker reads them from the chunk files). About 16 MB per million contacts each.
   */
  const seenByExport = new KeptSeenIds(KEEP_SEEN);
  return {
    async exportContacts(given: ExportInput | WithEarlierFolderName<ExportInput>): Promise<ExportResult> {
      const result = await runExport(given, {});
      if (!result.done) throw new Error('an export without a part limit ended before its last page');
      const { done: _, quietMs: _quiet, ...manifest } = result;
      return manifest;
    },

    /**
     * The export in parts, for a run that updates chunks while the listing goes on: each part
     * resumes where the export's progress file says, makes `stopAfterChunks` more chunk files
     * final (or ends after a few minutes, or at the last page) and says where it left off. While it
     * runs, the run learns of each chunk made final from the progress file (awaitExportedChunks)
     * and updates it: files no retry rewrites. Parts bound the run's history between them.
     */
    async exportPart(
      given: ExportPartInput | WithEarlierFolderName<ExportPartInput>,
    ): Promise<ExportPartResult> {
      return runExport(given, {
        stopAfterChunks: given.retryOf ? undefined : given.stopAfterChunks,
        besideChunks: given.besideChunks,
        chunksBeside: given.chunksBeside,
        chunksAfter: given.chunksAfter,
        exportSlots: given.exportSlots,
      });
    },
  };

  /**
   * Pages through the contacts needing a value, gives each a new value and writes chunk files of
   * at most CHUNK_LINES lines. A contact that holds any value keeps it (unless the run replaces
   * values espresso would not write, and this is one). A retried attempt resumes after the last
   * chunk written (the progress file and the heartbeat say where; an ESP export job is saved in the
   * run's folder before it is read, so a retry reads it and never starts a second one); a finished
   * export is reused by a retry of the same run, which owns its folder.
   */
  async function runExport(
    given: ExportInput | WithEarlierFolderName<ExportInput>,
    part: {
      stopAfterChunks?: number;
      besideChunks?: boolean;
      chunksBeside?: number;
      chunksAfter?: number;
      exportSlots?: number;
    },
  ): Promise<ExportPartResult> {
    return mapFailures(async (): Promise<ExportPartResult> => {
      const input = withRunFolder(given);
      const folder = new ExportFolder(blobs, input.configurationId, input.runFolder);
      const context = Context.current();
      // Read at once: a hand-over between two runs of one account waits on these round trips.
      const reads = Promise.all([
        loadTarget(deps, input.configurationId),
        // What is safely in chunk files, and the cursor of the first page that is not.
        folder.resumeFrom(context),
      ]);
      reads.catch(() => undefined); // awaited below, unless the export is finished already
      const finished = await folder.manifest();
      if (finished) {
        // A retry of a finished export needs neither (its configuration may be gone since).
        await reads.catch(() => undefined);
        if (
          finished.mode !== input.mode ||
          (finished.retryOf ?? undefined) !== input.retryOf ||
          (finished.replacing !== undefined) !== !!input.replaceForeignValues
        ) {
          throw new CorruptDataError(
            'blob',
            folder.manifestKey,
            `it holds an export of another kind (${finished.mode})`,
          );
        }
        return { done: true, ...finished };
      }
      const [{ processor, target }, resumed] = await reads;
      let committed: ExportProgress = resumed ?? {
        chunkCount: 0,
        contacts: 0,
        alreadySet: 0,
        foreignValues: 0,
        replacing: 0,
      };
      const now = deps.clock ?? Date.now;
      const partStarted = now();
      // A redispatch writes the earlier run's values, to contacts that are empty now only. One the
      // earlier run refuses (a dry run's, an unfinished export) calls no ESP, maintenance included.
      const earlier = input.retryOf
        ? await new ExportFolder(blobs, input.configurationId, input.retryOf).notUpdated()
        : undefined;
      // The run holds the account: maintenance has it whole (no chunk runs before it); so has the
      // listing, unless the run's chunk updates go on beside it. A guest of the account's holder
      // has what the holder lends it (AccountShare.check), until the account is its own.
      const whole = AccountShare.whole(deps, processor, target, input.lock);
      // Alive, and told of a cancellation, while maintenance and the listing's start call the ESP
      // (the listing beats on its own): slow answers or a refresh another worker holds took past
      // the heartbeat timeout, and the server started a second attempt beside this one.
      // Maintenance's credentials are read while the lock is looked at (a guest may wait there).
      const maintain = input.maintain && !committed.maintenance;
      const credentials = maintain ? processor.freshCredentials(target) : undefined;
      credentials?.catch(() => undefined); // awaited by maintenance, unless the lock check throws
      await beating(
        context,
        () => committed,
        async () => {
          await whole.check();
          if (maintain) {
            const started = Date.now();
            const maintenance = await processor.maintain(target, {
              dryRun: input.dryRun,
              pacing: whole.pacing,
              credentials,
            });
            committed = { ...committed, maintenance, maintenanceMs: Date.now() - started };
            context.heartbeat(committed);
          }
        },
      );
      const slots = exportSlotsGiven(part.exportSlots);
      const share = part.besideChunks
        ? AccountShare.exportBesideChunks(
            deps,
            processor,
            target,
            input.lock,
            committed.exportKeeps,
            validBeside(part.chunksBeside)
              ? {
                  beside: part.chunksBeside,
                  made: committed.chunkCount,
                  ...(validBeside(part.chunksAfter) ? { after: part.chunksAfter } : {}),
                }
              : undefined,
            slots,
          )
        : whole;
      // Maintenance or the previous part may have just used the export's share: its first request
      // waits one of its intervals, from maintenance's last request when there was one (the
      // previous part's is not known). Checked before it (a guest's share is capped at what the
      // holder lends it).
      if (share !== whole) {
        whole.passGuestTo(share);
        await share.check();
        share.pacing.takeOver(whole.pacing.quietMs() ?? 0);
      }
      // Without the field (a dry run's maintenance would create it) every contact needs a value.
      const mode = committed.maintenance?.field === 'would_create' ? 'full' : input.mode;
      const listMode = earlier ? 'incremental' : mode;
      if (!committed.cursor && committed.chunkCount === 0) {
        const cursor = await beating(
          context,
          () => committed,
          () => folder.exportJob(() => processor.startListing(target, listMode, share.pacing)),
        );
        committed = { ...committed, cursor };
        context.heartbeat(committed);
      }
      // Offset paging (Mailchimp) repeats contacts when the list changes during the listing: a
      // contact must never get two values, so every repeat is dropped, across parts and resumes
      // too: the ids in the chunk files so far (kept from this worker's previous part when it ran
      // that part, else read again).
      const key = `${input.configurationId}/${input.runFolder}`;
      const kept = seenByExport.take(key);
      const chunkCount = committed.chunkCount;
      const seenSoFar = async () =>
        kept && kept.chunkCount === chunkCount ? kept.seen : folder.seenInChunks(chunkCount);
      const listed = await listIntoChunks(
        {
          folder,
          context,
          processor,
          target,
          share,
          mode: listMode,
          replaceForeignValues: input.replaceForeignValues,
          earlier,
          seenSoFar,
          stopAfterChunks: part.stopAfterChunks,
          // By offset, as many pages on their way as the export has slots (two at most).
          pagesAtOnce: share === whole ? PAGES_AT_ONCE : slots,
          partStarted,
          now,
        },
        committed,
      );
      committed = listed.progress;
      if (listed.partEnded) {
        seenByExport.keep(key, { chunkCount: committed.chunkCount, seen: listed.seen });
        return { done: false, chunkCount: committed.chunkCount, contacts: committed.contacts };
      }

      const manifest: ExportManifest = {
        chunkCount: committed.chunkCount,
        contacts: committed.contacts,
        alreadySet: committed.alreadySet,
        ...(committed.foreignValues ? { foreignValues: committed.foreignValues } : {}),
        ...(input.replaceForeignValues ? { replacing: committed.replacing ?? 0 } : {}),
        mode: input.mode,
        ...(input.dryRun ? { dryRun: true } : {}),
        ...(input.retryOf ? { retryOf: input.retryOf } : {}),
        ...(committed.maintenance ? { maintenance: committed.maintenance } : {}),
        finishedAt: new Date().toISOString(),
      };
      await folder.writeManifest(manifest);
      await folder.saveProgress({ ...committed, ended: true });
      runLog(deps, context, { ...input, esp: processor.descriptor.id }).info(
        { chunks: manifest.chunkCount, contacts: manifest.contacts, alreadySet: manifest.alreadySet },
        'export finished',
      );
      const quietMs = share.listsBesideChunks ? share.pacing.quietMs() : undefined;
      return {
        done: true,
        ...manifest,
        ...(committed.maintenanceMs !== undefined ? { maintenanceMs: committed.maintenanceMs } : {}),
        ...(quietMs !== undefined ? { quietMs } : {}),
      };
    });
  }
}

/** Runs `fn`, heartbeating `details()` meanwhile. */
async function beating<T>(context: Context, details: () => unknown, fn: () => Promise<T>): Promise<T> {
  const beat = setInterval(() => context.heartbeat(details()), HEARTBEAT_EVERY_MS);
  try {
    return await fn();
  } finally {
    clearInterval(beat);
  }
}

/** A count of chunks a run sent (beside the export, or the window capping them; older runs send none). */
function validBeside(n: number | undefined): n is number {
  return Number.isInteger(n) && n! >= 1;
}
