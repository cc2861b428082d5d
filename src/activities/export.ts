import { randomBytes } from 'node:crypto';
import { Context } from '@temporalio/activity';
import type { ActivityDeps } from '.';
import { loadTarget } from '.';
import type { ContactPage, ListMode, MaintenanceReport } from '../processors/types';
import type { LockOwner } from '../runs/account-lock';
import { refuseDryRun } from '../runs/dry-runs';
import { ConflictError, CorruptDataError, NotFoundError } from '../storage';
import {
  CHUNK_LINE_MAX,
  CHUNK_LINES,
  exportJobSchema,
  exportManifestSchema,
  runFiles,
  type ExportManifest,
  type ResultLine,
} from '../runs/files';
import { AccountShare } from './account-share';
import { mapFailures } from './failures';
import { runLog } from './run-log';
import { SeenIds } from './seen-ids';
import { HEARTBEAT_EVERY_MS } from './update-chunk';

export interface ExportInput {
  configurationId: string;
  /** The run's folder (named runDate for the runs of earlier versions). */
  runDate: string;
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
}

/** Where a part left the export: chunk files 1..chunkCount are final; or the finished export. */
export type ExportPartResult =
  { done: false; chunkCount: number; contacts: number } | ({ done: true } & ExportResult);

/** Exports whose seen ids a worker keeps between their parts. */
const KEEP_SEEN_OF = 8;
/** A part ends after this long (at a page boundary), so the run can continue as new between parts. */
const PART_MAX_MS = 5 * 60_000;

/**
 * Heartbeat details, and the export's progress file: enough to resume after the last chunk
 * written. Keys and counts only.
 */
interface ExportProgress {
  cursor?: string;
  chunkCount: number;
  contacts: number;
  alreadySet: number;
  foreignValues?: number;
  replacing?: number;
  maintenance?: MaintenanceReport;
  maintenanceMs?: number;
  /** The export has written its manifest (a watch of its progress may stop). */
  ended?: boolean;
  /** Parts of the export that have ended so far (a watch of a part that ended may stop). */
  partsEnded?: number;
  /** Beside chunk updates: what the export keeps of the account's rate (the chunks take the rest). */
  exportKeeps?: number;
}

/**
 * The values espresso itself writes. A value of any other form that a contact holds is kept too,
 * unless the run is asked to replace such values.
 */
const OWN_VALUE = /^[A-Za-z0-9_-]{16,64}$/;

/** A new value: 128 random bits, base64url. Never derived from anything about the contact. */
export function newValue(): string {
  return randomBytes(16).toString('base64url');
}

export function createExportActivities(deps: ActivityDeps) {
  const { blobs } = deps.stores;
  /**
   * The ids a part of an export has seen, for the next part when this worker runs it (a cache:
   * another worker reads them from the chunk files). About 16 MB per million contacts each.
   */
  const seenByExport = new Map<string, { chunkCount: number; seen: SeenIds }>();
  return {
    async exportContacts(input: ExportInput): Promise<ExportResult> {
      const result = await runExport(input, {});
      if (!result.done) throw new Error('an export without a part limit ended before its last page');
      const { done: _, ...manifest } = result;
      return manifest;
    },

    /**
     * The export in parts, for a run that updates chunks while the listing goes on: each part
     * resumes where the export's progress file says, makes `stopAfterChunks` more chunk files
     * final (or ends after PART_MAX_MS, or at the last page) and says where it left off. While it
     * runs, the run learns of each chunk made final from the progress file (awaitExportedChunks)
     * and updates it: files no retry rewrites. Parts bound the run's history between them.
     */
    async exportPart(input: ExportPartInput): Promise<ExportPartResult> {
      return runExport(input, {
        stopAfterChunks: input.retryOf ? undefined : input.stopAfterChunks,
        besideChunks: input.besideChunks,
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
    input: ExportInput,
    part: { stopAfterChunks?: number; besideChunks?: boolean },
  ): Promise<ExportPartResult> {
    return mapFailures(async (): Promise<ExportPartResult> => {
      const manifestKey = runFiles.exportManifest(input.configurationId, input.runDate);
      const finished = await readManifest(input.configurationId, input.runDate);
      if (finished) {
        if (
          finished.mode !== input.mode ||
          (finished.retryOf ?? undefined) !== input.retryOf ||
          (finished.replacing !== undefined) !== !!input.replaceForeignValues
        ) {
          throw new CorruptDataError(
            'blob',
            manifestKey,
            `it holds an export of another kind (${finished.mode})`,
          );
        }
        return { done: true, ...finished };
      }
      const { processor, target } = await loadTarget(deps, input.configurationId);
      const context = Context.current();
      // What is safely in chunk files, and the cursor of the first page that is not.
      let committed: ExportProgress = (await resumeFrom(input, context)) ?? {
        chunkCount: 0,
        contacts: 0,
        alreadySet: 0,
        foreignValues: 0,
        replacing: 0,
      };
      const firstChunk = committed.chunkCount;
      const partStarted = Date.now();
      // A redispatch writes the earlier run's values, to contacts that are empty now only. One the
      // earlier run refuses (a dry run's, an unfinished export) calls no ESP, maintenance included.
      const earlier = input.retryOf ? await earlierValues(input.configurationId, input.retryOf) : undefined;
      // The run holds the account: maintenance has it whole (no chunk runs before it); so has the
      // listing, one request at a time, unless the run's chunk updates go on beside it.
      const whole = AccountShare.whole(deps, processor, target, input.lock);
      await whole.check();
      if (input.maintain && !committed.maintenance) {
        const started = Date.now();
        const maintenance = await processor.maintain(target, {
          dryRun: input.dryRun,
          pacing: whole.pacing,
        });
        committed = { ...committed, maintenance, maintenanceMs: Date.now() - started };
        context.heartbeat(committed);
      }
      const share = part.besideChunks
        ? AccountShare.exportBesideChunks(deps, processor, target, input.lock, committed.exportKeeps)
        : whole;
      // Without the field (a dry run's maintenance would create it) every contact needs a value.
      const mode = committed.maintenance?.field === 'would_create' ? 'full' : input.mode;
      const listMode = earlier ? 'incremental' : mode;
      let cursor = committed.cursor;
      if (!cursor && committed.chunkCount === 0) {
        cursor = await exportJob(input, () => processor.startListing(target, listMode, share.pacing));
        committed = { ...committed, cursor };
        context.heartbeat(committed);
      }
      let lines: string[] = [];
      let pending = { alreadySet: 0, foreignValues: 0, replacing: 0 };

      const flush = async () => {
        let chunkCount = committed.chunkCount;
        for (let i = 0; i < lines.length; i += CHUNK_LINES) {
          const key = runFiles.contacts(input.configurationId, input.runDate, ++chunkCount);
          await blobs.put(key, lines.slice(i, i + CHUNK_LINES).join('\n') + '\n', {
            contentType: 'application/x-ndjson',
          });
        }
        const next: ExportProgress = {
          cursor,
          chunkCount,
          contacts: committed.contacts + lines.length,
          alreadySet: committed.alreadySet + pending.alreadySet,
          foreignValues: (committed.foreignValues ?? 0) + pending.foreignValues,
          replacing: (committed.replacing ?? 0) + pending.replacing,
          maintenance: committed.maintenance,
          maintenanceMs: committed.maintenanceMs,
          partsEnded: committed.partsEnded,
        };
        const keeps = share.exportKeeps();
        if (keeps !== undefined) next.exportKeeps = keeps;
        // New chunk files are final once the progress file counts them (written after them).
        if (chunkCount > committed.chunkCount) await saveProgress(input, next);
        committed = next;
        lines = [];
        pending = { alreadySet: 0, foreignValues: 0, replacing: 0 };
      };

      const stillEmpty = new SeenIds();

      // Alive even while a slow ESP answers; the details always say what is in chunk files.
      const beat = setInterval(() => {
        context.heartbeat(committed);
        void share.check().catch(() => undefined); // a lost lock stops the next page
      }, HEARTBEAT_EVERY_MS);
      // Offset paging (Mailchimp) repeats contacts when the list changes during the listing: a
      // contact must never get two values, so every repeat is dropped, across parts and resumes
      // too: the ids in the chunk files so far (kept from this worker's previous part when it ran
      // that part, else read again).
      const folder = `${input.configurationId}/${input.runDate}`;
      const kept = seenByExport.get(folder);
      seenByExport.delete(folder);
      const seen =
        kept && kept.chunkCount === committed.chunkCount
          ? kept.seen
          : await seenInChunks(input, committed.chunkCount);
      const fetchPage = async (at: string | undefined) => {
        context.cancellationSignal.throwIfAborted();
        await share.check();
        return processor.listPage(target, at, listMode, share.pacing);
      };
      let ahead: Promise<ContactPage> | undefined;
      try {
        for (;;) {
          const page = await (ahead ?? fetchPage(cursor));
          // The next page is asked for at once, while this one is sorted and written: the listing
          // waits on the ESP's latency or its limit, not on both and the blob store too. (A part
          // that ends here leaves it unread: one page per part, and a part is many chunks.)
          ahead = page.nextCursor ? fetchPage(page.nextCursor) : undefined;
          ahead?.catch(() => undefined); // awaited next, or at the end
          const fresh: string[] = [];
          const found = { alreadySet: 0, foreignValues: 0, replacing: 0 };
          for (const contact of page.contacts) {
            const { contactId } = contact;
            const value = contact.currentValue;
            const empty = value === undefined || value === '';
            if (earlier) {
              if (empty) stillEmpty.add(contactId);
              continue;
            }
            if (!seen.add(contactId)) continue;
            if (empty) {
              fresh.push(JSON.stringify({ contactId, value: newValue() }));
              continue;
            }
            const foreign = !OWN_VALUE.test(value);
            // Stable once written: a contact that holds a value keeps it, whatever its form, unless
            // the operator asked to replace foreign ones (and its line can say what it replaces).
            const replacing =
              foreign && input.replaceForeignValues
                ? JSON.stringify({ contactId, value: newValue(), previous: value })
                : undefined;
            if (replacing && replacing.length <= CHUNK_LINE_MAX) {
              fresh.push(replacing);
              found.replacing++;
            } else {
              found.alreadySet++;
              if (foreign) found.foreignValues++;
            }
          }
          // Chunk files hold whole pages: one that does not fit the chunk being filled starts the
          // next one, so resuming from this page's cursor loses nothing.
          if (lines.length > 0 && lines.length + fresh.length > CHUNK_LINES) await flush();
          lines.push(...fresh);
          pending.alreadySet += found.alreadySet;
          pending.foreignValues += found.foreignValues;
          pending.replacing += found.replacing;
          if (!page.nextCursor) break;
          cursor = page.nextCursor;
          // A chunk that would not take another page like this one is written now, so the run can
          // update it while the listing goes on. A part ends after a chunk when it has made its
          // share of them, or at a page that left nothing waiting once it has run long enough.
          const full = lines.length > 0 && lines.length + page.contacts.length > CHUNK_LINES;
          const made = committed.chunkCount + (full ? 1 : 0) - firstChunk;
          const ends =
            part.stopAfterChunks !== undefined &&
            ((full && made >= part.stopAfterChunks) ||
              ((full || lines.length === 0) && Date.now() - partStarted >= PART_MAX_MS));
          // Nothing listed waits for a chunk file: a retry resumes from the next page.
          if (full || (lines.length === 0 && !earlier)) await flush();
          if (ends) {
            committed = { ...committed, partsEnded: (committed.partsEnded ?? 0) + 1 };
            await saveProgress(input, committed);
            if (seenByExport.size >= KEEP_SEEN_OF) seenByExport.clear();
            seenByExport.set(folder, { chunkCount: committed.chunkCount, seen });
            return { done: false, chunkCount: committed.chunkCount, contacts: committed.contacts };
          }
          context.heartbeat(committed);
        }
        cursor = undefined;
        if (earlier) {
          // The earlier run's values of the contacts that are still empty, in its order.
          for await (const line of earlier()) {
            if (stillEmpty.has(line.contactId) && seen.add(line.contactId)) lines.push(JSON.stringify(line));
            if (lines.length >= CHUNK_LINES) await flush();
          }
        }
        await flush();
      } finally {
        clearInterval(beat);
        // A page asked for ahead and not needed (the part ended, or failed) ends before the part
        // does: no request of this part outlives it.
        await ahead?.catch(() => undefined);
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
      await blobs.put(manifestKey, JSON.stringify(manifest, null, 2) + '\n', {
        contentType: 'application/json',
      });
      await saveProgress(input, { ...committed, ended: true });
      runLog(deps, context, { ...input, esp: processor.descriptor.id }).info(
        { chunks: manifest.chunkCount, contacts: manifest.contacts, alreadySet: manifest.alreadySet },
        'export finished',
      );
      return committed.maintenanceMs === undefined
        ? { done: true, ...manifest }
        : { done: true, ...manifest, maintenanceMs: committed.maintenanceMs };
    });
  }

  /**
   * The cursor of the ESP export job this run's listing reads: the saved one, or one started now
   * and saved before anything reads it (a retry never starts a second job). Undefined: no job.
   */
  async function exportJob(
    input: ExportInput,
    start: () => Promise<string | undefined>,
  ): Promise<string | undefined> {
    const key = runFiles.exportJob(input.configurationId, input.runDate);
    const saved = async () => {
      try {
        return exportJobSchema.parse(JSON.parse((await blobs.get(key)).body.toString('utf8'))).cursor;
      } catch (err) {
        if (err instanceof NotFoundError) return undefined;
        throw err;
      }
    };
    const found = await saved();
    if (found) return found;
    const cursor = await start();
    if (!cursor) return undefined;
    try {
      await blobs.put(key, JSON.stringify({ cursor }) + '\n', {
        ifNoneMatch: '*',
        contentType: 'application/json',
      });
      return cursor;
    } catch (err) {
      // An attempt that outlived its time limit saved its job first: read that one.
      if (err instanceof ConflictError) return (await saved()) ?? cursor;
      throw err;
    }
  }

  /** The contact ids in a run's first `chunkCount` chunk files. */
  async function seenInChunks(input: ExportInput, chunkCount: number): Promise<SeenIds> {
    const seen = new SeenIds();
    for (let n = 1; n <= chunkCount; n++) {
      for await (const line of blobs.readLines(runFiles.contacts(input.configurationId, input.runDate, n))) {
        const id = contactIdOf(line);
        if (id) seen.add(id);
      }
    }
    return seen;
  }

  /**
   * Where a retried attempt or a later part resumes: the progress file, or this attempt's last
   * heartbeat when it says as many chunks (it may be further along the pages that gave none).
   */
  async function resumeFrom(input: ExportInput, context: Context): Promise<ExportProgress | undefined> {
    const beat = context.info.heartbeatDetails as ExportProgress | undefined;
    const key = runFiles.exportProgress(input.configurationId, input.runDate);
    let saved: ExportProgress | undefined;
    try {
      saved = JSON.parse((await blobs.get(key)).body.toString('utf8')) as ExportProgress;
    } catch (err) {
      if (err instanceof SyntaxError) throw new CorruptDataError('blob', key, 'it does not parse');
      if (!(err instanceof NotFoundError)) throw err;
    }
    if (saved && !Number.isInteger(saved.chunkCount)) {
      throw new CorruptDataError('blob', key, 'it has no chunk count');
    }
    if (!saved || (beat && beat.chunkCount >= saved.chunkCount)) return beat;
    return saved;
  }

  async function saveProgress(input: ExportInput, progress: ExportProgress): Promise<void> {
    await blobs.put(
      runFiles.exportProgress(input.configurationId, input.runDate),
      JSON.stringify(progress) + '\n',
      { contentType: 'application/json' },
    );
  }

  async function readManifest(configurationId: string, folder: string): Promise<ExportManifest | undefined> {
    try {
      return exportManifestSchema.parse(
        JSON.parse((await blobs.get(runFiles.exportManifest(configurationId, folder))).body.toString('utf8')),
      );
    } catch (err) {
      if (err instanceof NotFoundError) return undefined;
      throw err;
    }
  }

  /**
   * The lines of an earlier run that were not updated then (its chunk files minus the `updated`
   * lines of its results files), streamed chunk by chunk. The earlier run must have finished its
   * export and must not be a dry run.
   */
  async function earlierValues(configurationId: string, folder: string) {
    await refuseDryRun(blobs, configurationId, folder);
    const manifest = await readManifest(configurationId, folder);
    if (!manifest)
      throw new CorruptDataError(
        'blob',
        runFiles.exportManifest(configurationId, folder),
        'run ' + folder + ' has no finished export to redispatch',
      );
    return async function* (): AsyncIterable<{ contactId: string; value: string }> {
      for (let chunk = 1; chunk <= manifest.chunkCount; chunk++) {
        const updated = new Set<string>();
        try {
          for await (const raw of blobs.readLines(runFiles.results(configurationId, folder, chunk))) {
            if (!raw.trim()) continue;
            const line = JSON.parse(raw) as ResultLine;
            if (line.status === 'updated' && line.contactId) updated.add(line.contactId);
          }
        } catch (err) {
          if (!(err instanceof NotFoundError)) throw err; // a chunk never dispatched: nothing updated
        }
        for await (const raw of blobs.readLines(runFiles.contacts(configurationId, folder, chunk))) {
          const line = parseChunkLine(raw);
          if (line && !updated.has(line.contactId)) yield line;
        }
      }
    };
  }
}

function contactIdOf(line: string): string | undefined {
  return parseChunkLine(line)?.contactId;
}

function parseChunkLine(line: string): { contactId: string; value: string } | undefined {
  try {
    const parsed = JSON.parse(line) as { contactId?: unknown; value?: unknown };
    return typeof parsed.contactId === 'string' && typeof parsed.value === 'string'
      ? { contactId: parsed.contactId, value: parsed.value }
      : undefined;
  } catch {
    return undefined; // a damaged line: updateChunk reports it
  }
}
