import { Context } from '@temporalio/activity';
import type { ActivityDeps } from './deps';
import { loadTarget } from './deps';
import type { ContactResult, ContactUpdate } from '../processors/types';
import type { LockOwner } from '../runs/account-lock';
import { NotFoundError } from '../storage';
import { refuseDryRun } from '../runs/dry-runs';
import {
  CHUNK_LINE_MAX,
  chunkLineSchema,
  plainChunkLine,
  rejectionKind,
  resultLineText,
  runFiles,
  type ResultLine,
} from '../runs/files';
import { AccountShare } from './account-share';
import { InactiveConfigurationError, mapFailures } from './failures';
import { withRunFolder, type WithEarlierFolderName } from './run-folder';
import { runLog } from './run-log';
import { exportSlotsGiven } from './share-sizes';

export interface UpdateChunkInput {
  configurationId: string;
  /** The run's folder under runs/<configurationId>/ (e.g. 2026-11-28 or 2026-11-28_manual-080503-k3f2). */
  runFolder: string;
  /** Counts from 1. */
  chunk: number;
  /** Legacy redispatch: contacts already `updated` in this chunk's results file are not sent again. */
  onlyPending: boolean;
  /** Chunk updates of the run in flight at once: this chunk's share of the ESP account is 1/window. */
  window?: number;
  /** The run's export still runs beside its chunk updates: the share leaves the export its part. */
  besideExport?: boolean;
  /** Beside the export: the window the run counts this chunk in once the export has ended (default: window). */
  afterExportWindow?: number;
  /**
   * With afterExportWindow: the run counts this chunk in no larger a window than the chunk files
   * the export made in all (no more can run at once), and so may it once the export has ended.
   */
  afterExportByChunkCount?: boolean;
  /**
   * With afterExportByChunkCount: in a window of one more than the chunk files the export made,
   * whose share the run lends to the run waiting for its ESP account.
   */
  afterExportKeepsOneForGuest?: boolean;
  /** The run gives this chunk larger shares as others end (the run's chunk windows file). */
  followWindows?: boolean;
  /**
   * Started as the export ended, in the place the export held: a share no chunk held, and the
   * export's last request came before it wrote its last files and ended, so the chunk need not
   * wait one of its intervals first.
   */
  inExportPlace?: boolean;
  /**
   * Beside the export, before any of the run's chunks had ended: a share the export held, and
   * lowered its pacing for before it said the chunk file was final. The chunk's first attempt
   * waits half of one of its intervals (FROM_EXPORT_HOLD), not a whole one.
   */
  shareOfExport?: boolean;
  /** Beside the export: the requests it keeps in flight (share-sizes.ts, exportSlots; default one). */
  exportSlots?: number;
  /**
   * No request of the run's ended chunks (or its export) started in the last quietMs before this
   * chunk was started: taking over a share, its first attempt waits one interval from then, not
   * from its own start.
   */
  quietMs?: number;
  /** The run's account lock (runs of earlier versions hold none). */
  lock?: LockOwner;
}

export interface ChunkOutcome {
  chunk: number;
  updated: number;
  rejected: number;
  rejectedByKind: Record<string, number>;
  /** Of updated: values written over one espresso would not write (absent when none). */
  replaced?: number;
  /**
   * How long before it returned this chunk's last request started (absent: it sent none): the
   * run tells the chunk that takes over its share (quietMs).
   */
  quietMs?: number;
}

/**
 * The part of one of its intervals a chunk beside the export waits before its first request when
 * its share was the export's (no chunk of the run had ended). A whole interval (a second at one
 * request a second) left each such share unused that long: one account of 50 requests a second
 * with nine chunks beside its export measured 45.26 to 45.94 requests/s with a whole interval,
 * 45.33 to 46.08 with half, 2026-12-06 01:55-02:16 (docs/scale.md). The busiest second while the
 * export ran held 47 requests with a whole interval, 48 with half, 49 with none; the run's
 * busiest, after the export, 50 with each.
 */
const FROM_EXPORT_HOLD = 0.5;

/** A quietMs a run sent: a duration in milliseconds, else none (0). */
function validQuiet(ms: number | undefined): number {
  return typeof ms === 'number' && Number.isFinite(ms) && ms > 0 ? ms : 0;
}

/** Heartbeat details: lines whose results are saved in part files. Counts only. */
interface ChunkProgress {
  linesDone: number;
  parts: number;
  /** Lines past linesDone whose results an attempt saved (runFiles.resultsAhead); absent: none. */
  ahead?: number;
}

/**
 * ESP batches sent together per group; a group's results are saved before those of the next, which
 * is sent while the group's last answers come.
 */
const GROUP_BATCHES = 4;
/** A chunk re-reads its configuration's status this often: disabling it stops the writes within seconds. */
const STATUS_CHECK_MS = 1_000;
/** Activities heartbeat this often; the workflows' heartbeat timeout is 30 s. */
export const HEARTBEAT_EVERY_MS = 5_000;

/** A line to write (with the value it replaces, if any), or its result already known. */
type Entry = { update: ContactUpdate; previous?: string } | { result: ResultLine };

/** A group of a chunk's lines whose batches are on their way (update-chunk's `sendGroup`). */
interface SentGroup {
  entries: Entry[];
  /** The chunk line of each entry. */
  lines: number[];
  last: boolean;
  /** Aborted, the batches not sent yet are not sent. */
  stop: AbortController;
  answer: Promise<{ results: ContactResult[]; stopped?: unknown; ahead?: ContactResult[] }>;
}

/**
 * The result lines of a group's entries, up to the first one whose batch was not answered
 * (`written`: the answered updates' results, in order).
 */
function answeredLines(entries: Entry[], written: ContactResult[]): ResultLine[] {
  let next = 0;
  const lines: ResultLine[] = [];
  for (const e of entries) {
    if ('result' in e) {
      lines.push(e.result);
      continue;
    }
    const r = written[next++];
    if (!r) break; // from here on, stopped before it was answered
    lines.push(resultLine(e, r));
  }
  return lines;
}

export function createUpdateChunkActivities(deps: ActivityDeps) {
  return {
    /**
     * Streams one chunk file, writes its values to the ESP in ESP-sized batches, and writes the
     * chunk's results file. Progress is heartbeated per group, so a retry resumes after the last
     * group whose results were saved.
     */
    async updateChunk(
      given: UpdateChunkInput | WithEarlierFolderName<UpdateChunkInput>,
    ): Promise<ChunkOutcome> {
      return mapFailures(async () => {
        const input = withRunFolder(given);
        const { blobs } = deps.stores;
        const { configurationId, runFolder, chunk } = input;
        // Both read at once (a chunk's start is a hand-over's round trips); the configuration's
        // answer counts first.
        const [loaded, dryRunCheck] = await Promise.allSettled([
          loadTarget(deps, configurationId),
          refuseDryRun(blobs, configurationId, runFolder),
        ]);
        if (loaded.status === 'rejected') throw loaded.reason;
        const { configuration, processor, target } = loaded.value;
        // Disabling a configuration (or losing its credentials) stops its run at the next chunk.
        if (configuration.status !== 'active') throw inactive(configuration.status);
        // However it was started (a legacy dispatch, by hand), a chunk of a dry run is never written.
        if (dryRunCheck.status === 'rejected') throw dryRunCheck.reason;
        const context = Context.current();
        const progress: ChunkProgress = (context.info.heartbeatDetails as ChunkProgress | undefined) ?? {
          linesDone: 0,
          parts: 0,
        };
        const resultsKey = runFiles.results(configurationId, runFolder, chunk);
        const earlier = input.onlyPending ? await updatedResults(resultsKey) : new Map<string, ResultLine>();
        const aheadKey = runFiles.resultsAhead(configurationId, runFolder, chunk);
        /** Results of lines past linesDone an earlier attempt saved, by line number. */
        const ahead = progress.ahead ? await resultsAhead(aheadKey) : new Map<number, ResultLine>();
        const groupSize = processor.descriptor.maxBatchSize * GROUP_BATCHES;
        // This chunk's share of the account, which its run holds: one of `window` in flight.
        const window = input.window ?? processor.descriptor.concurrency;
        const follow = input.followWindows
          ? { chunk, windowsKey: runFiles.chunkWindows(configurationId, runFolder) }
          : undefined;
        const share = input.besideExport
          ? AccountShare.ofWindowBesideExport(
              deps,
              processor,
              target,
              window,
              runFiles.exportProgress(configurationId, runFolder),
              input.lock,
              input.afterExportWindow,
              follow,
              input.afterExportByChunkCount,
              exportSlotsGiven(input.exportSlots),
              input.afterExportKeepsOneForGuest === true,
            )
          : AccountShare.ofWindow(deps, processor, target, window, input.lock, follow);
        // The chunk that ended before this one started may have just used this share. Beside the
        // export (afterExportWindow), the run's first chunk takes a share no chunk held: the export
        // gave it up, lowering its pacing before it said the chunk file was final, and spacing 5%
        // under the limit covers the export's requests at the old pace in the second before; so
        // does the chunk that takes the export's place when it ends. The next chunks beside the
        // export wait half of one of their intervals: their files can be made within that same
        // second, and each hand-over from the export at once would count one more request in it.
        const firstAttempt = Context.current().info.attempt === 1;
        const freshShare =
          firstAttempt &&
          (input.inExportPlace ||
            (input.besideExport && input.afterExportWindow !== undefined && chunk === 1));
        if (!freshShare) {
          const ofExport = firstAttempt && input.besideExport && input.shareOfExport === true;
          share.pacing.takeOver(
            firstAttempt ? validQuiet(input.quietMs) : 0,
            ofExport ? FROM_EXPORT_HOLD : 1,
          );
        }

        let group: Entry[] = [];
        /** The chunk line of each entry of the group (blank lines have none). */
        let groupLines: number[] = [];
        let checked = Date.now();
        // The first lock check is on its way while the chunk file is read; the first group waits for it.
        let firstCheck: Promise<void> | undefined = share.check();
        firstCheck.catch(() => undefined);
        /** The parts of this attempt (text and counts), so the merge reads only those of earlier attempts. */
        const saved = new Map<number, SavedPart>();

        /**
         * Sends a group's batches (they wait for their turn in the chunk's pacing, after those of
         * the group before). `last`: the chunk's last group, whose results go straight into the
         * results file (mergeParts), not into a part file first: an attempt that stops before that
         * file is written sends the group again, with the same values.
         */
        const sendGroup = async (entries: Entry[], lines: number[], last: boolean): Promise<SentGroup> => {
          // A cancelled run writes nothing more; nor does a configuration disabled meanwhile, nor a
          // run that lost its account lock.
          context.cancellationSignal.throwIfAborted();
          await (firstCheck ?? share.check());
          firstCheck = undefined;
          if (Date.now() - checked > STATUS_CHECK_MS) {
            checked = Date.now();
            const { status } = await deps.stores.configurations.get(configurationId);
            if (status !== 'active') throw inactive(status);
          }
          const updates = entries.flatMap((e) => ('update' in e ? [e.update] : []));
          const stop = new AbortController();
          const answer = updates.length
            ? processor.writeBatches(target, updates, share.pacing, stop.signal)
            : Promise.resolve({ results: [] });
          return { entries, lines, last, stop, answer };
        };

        /**
         * Waits for a group's answers and saves its results. When one of its batches failed (a
         * 429, an ESP error), the group after it (`next`, on its way) sends nothing more; the lines
         * answered before the failure are saved, so the retry does not send them again, and the
         * retry starts at the first one that was not; so are those answered after it, in this
         * group or the next, which the retry takes instead of sending them. Saving them is a help,
         * not a must: should it fail, the retry sends them again.
         */
        const saveGroup = async (sent: SentGroup, next?: SentGroup) => {
          const { results: written, stopped, ahead: answeredAhead } = await sent.answer;
          const lines = answeredLines(sent.entries, written);
          if (stopped !== undefined) {
            next?.stop.abort();
            const after = await next?.answer;
            if (lines.length) await savePart(lines, sent.lines).catch(() => undefined);
            const known = [{ ...sent, from: lines.length, results: answeredAhead ?? [] }];
            if (next && after)
              known.push({ ...next, from: 0, results: [...after.results, ...(after.ahead ?? [])] });
            await saveAhead(known).catch(() => undefined);
            throw stopped;
          }
          if (sent.last)
            return void saved.set(progress.parts + 1, { text: textOf(lines), counts: countResults(lines) });
          await savePart(lines, sent.lines);
        };

        /**
         * Saves the results of a group's first entries (of chunk lines `groupLines`) in the chunk's
         * next part file.
         */
        const savePart = async (lines: ResultLine[], groupLines: number[]) => {
          const text = textOf(lines);
          const linesDone = groupLines[lines.length - 1]!;
          // Counted once written: a heartbeat meanwhile never names a part file that is not there.
          const part = progress.parts + 1;
          await blobs.put(runFiles.resultsPart(configurationId, runFolder, chunk, part), text);
          saved.set(part, { text, counts: countResults(lines) });
          progress.parts = part;
          progress.linesDone = linesDone;
          context.heartbeat(progress);
        };

        /**
         * Saves the results known for lines past each group's first `from` entries (batches
         * answered beside the one that failed, results taken from before), with those saved before
         * for lines past the groups, in the chunk's ahead file.
         */
        const saveAhead = async (groups: (SentGroup & { from: number; results: ContactResult[] })[]) => {
          const known = new Map<number, ResultLine>();
          for (const g of groups) {
            const byId = new Map(g.results.map((r) => [r.contactId, r]));
            g.entries.forEach((e, i) => {
              if (i < g.from) return;
              const r = 'update' in e ? byId.get(e.update.contactId) : undefined;
              if ('result' in e) known.set(g.lines[i]!, e.result);
              else if (r) known.set(g.lines[i]!, resultLine(e, r));
            });
          }
          const lastLines = groups[groups.length - 1]!.lines;
          const groupsEnd = lastLines[lastLines.length - 1] ?? 0;
          for (const [line, result] of ahead) if (line > groupsEnd) known.set(line, result);
          if (known.size === 0 && !progress.ahead) return;
          const text = [...known].map(([line, result]) => JSON.stringify({ line, result }) + '\n').join('');
          await blobs.put(aheadKey, text);
          progress.ahead = known.size;
          context.heartbeat(progress);
        };

        /**
         * The group on its way, and the one before it while its last answers come: the next group's
         * batches wait for their turn behind its, so the chunk's share is not left unused between
         * groups (a group's last answer, its part file, the next group's lines). Results are saved
         * group by group, in order.
         */
        let sending: SentGroup | undefined;
        const send = async (last = false) => {
          const sent = await sendGroup(group, groupLines, last).catch(async (err: unknown) => {
            // What was sent before this stop is answered and saved first (as the group it is).
            if (sending) await saveGroup(sending).catch(() => undefined);
            sending = undefined;
            throw err;
          });
          group = [];
          groupLines = [];
          const before = sending;
          sending = sent;
          if (!before) return;
          try {
            await saveGroup(before, sent);
          } catch (err) {
            // Nothing of this attempt is sent once it ends: the group after the one that stopped
            // sends no more, and what it sent is answered first.
            sent.stop.abort();
            await sent.answer;
            sending = undefined;
            throw err;
          }
        };

        // Alive even while a slow ESP answers; the details always say what is saved.
        const beat = setInterval(() => context.heartbeat(progress), HEARTBEAT_EVERY_MS);
        // Another worker's 429 is heard within seconds, even in a long group; a lost lock stops
        // the next group.
        const stopWatching = share.watchPauses();
        // Takes more as the export gives it back, when it ends, and as the run's other chunks end.
        const stopFollowing = share.followEvery();
        try {
          let lineNo = 0;
          const key = runFiles.contacts(configurationId, runFolder, chunk);
          for await (const lines of blobs.readLineBatches(key)) {
            for (const raw of lines) {
              lineNo++;
              if (lineNo <= progress.linesDone || raw.trim() === '') continue;
              const entry = parseLine(raw, lineNo);
              const done =
                'update' in entry ? (ahead.get(lineNo) ?? earlier.get(entry.update.contactId)) : undefined;
              group.push(
                done &&
                  'update' in entry &&
                  done.contactId === entry.update.contactId &&
                  done.value === entry.update.value
                  ? { result: done }
                  : entry,
              );
              groupLines.push(lineNo);
              if (group.length >= groupSize) await send();
            }
          }
          if (group.length) await send(true);
          const lastSent = sending;
          sending = undefined;
          if (lastSent) await saveGroup(lastSent);
        } catch (err) {
          // A failure elsewhere (the chunk file's read) while a group is on its way: it sends no
          // more, and the activity ends once it is answered.
          if (sending) {
            sending.stop.abort();
            await sending.answer;
          }
          throw err;
        } finally {
          clearInterval(beat);
          stopWatching();
          stopFollowing();
        }
        // Its requests are all answered: the run waiting for the account may have its share now,
        // before the chunk writes its results (a large write the store may take a while over).
        if (input.followWindows) await share.lendOnEnd(chunk).catch(() => undefined);
        const outcome = await mergeParts(configurationId, runFolder, chunk, saved, progress.parts);
        if (progress.ahead !== undefined) await blobs.delete(aheadKey);
        const esp = processor.descriptor.id;
        deps.metrics?.contacts.inc({ esp, result: 'updated', kind: '' }, outcome.updated);
        for (const [kind, n] of Object.entries(outcome.rejectedByKind)) {
          deps.metrics?.contacts.inc({ esp, result: 'rejected', kind }, n);
        }
        runLog(deps, context, { configurationId, runFolder, esp }).info(
          { chunk, updated: outcome.updated, rejected: outcome.rejected, attempt: context.info.attempt },
          'chunk written to the ESP',
        );
        const quiet = share.pacing.quietMs();
        return quiet === undefined ? outcome : { ...outcome, quietMs: Math.floor(quiet) };
      });
    },
  };

  /** The ahead file's results by line number; lines that do not parse, or no file, are left to send. */
  async function resultsAhead(key: string): Promise<Map<number, ResultLine>> {
    const known = new Map<number, ResultLine>();
    try {
      for await (const raw of deps.stores.blobs.readLines(key)) {
        try {
          const { line, result } = JSON.parse(raw) as { line?: unknown; result?: ResultLine };
          if (Number.isInteger(line) && result && typeof result.contactId === 'string')
            known.set(line as number, result);
        } catch {
          // Left to send again.
        }
      }
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err;
    }
    return known;
  }

  async function updatedResults(key: string): Promise<Map<string, ResultLine>> {
    const updated = new Map<string, ResultLine>();
    try {
      for await (const raw of deps.stores.blobs.readLines(key)) {
        if (!raw.trim()) continue;
        const line = JSON.parse(raw) as ResultLine;
        if (line.status === 'updated' && line.contactId) updated.set(line.contactId, line);
      }
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err;
    }
    return updated;
  }

  /**
   * Joins the part files (and the last group's results, which have none) into the chunk's results
   * file, then removes them, and counts outcomes. `saved`: this attempt's parts by number, which it
   * does not read again; `partFiles`: how many part files the chunk's attempts wrote.
   */
  async function mergeParts(
    configurationId: string,
    runFolder: string,
    chunk: number,
    saved: Map<number, SavedPart>,
    partFiles: number,
  ) {
    const { blobs } = deps.stores;
    const resultsKey = runFiles.results(configurationId, runFolder, chunk);
    const partKeys = Array.from({ length: partFiles }, (_, i) =>
      runFiles.resultsPart(configurationId, runFolder, chunk, i + 1),
    );
    const parts = Math.max(partFiles, ...saved.keys());
    let counts: ResultCounts;
    try {
      const bodies = await Promise.all(
        Array.from({ length: parts }, async (_, i) => {
          const mine = saved.get(i + 1);
          if (mine) return mine;
          const text = (await blobs.get(partKeys[i]!)).body.toString('utf8');
          return { text, counts: countText(text) };
        }),
      );
      await blobs.put(resultsKey, bodies.map((b) => b.text).join(''), {
        contentType: 'application/x-ndjson',
      });
      counts = bodies.reduce((sum, b) => addCounts(sum, b.counts), countResults([]));
    } catch (err) {
      // A retry after the merge already happened: the parts are (partly) gone, the results file is there.
      if (!(err instanceof NotFoundError)) throw err;
      counts = countText((await blobs.get(resultsKey)).body.toString('utf8'));
    }
    await Promise.all(partKeys.map((k) => blobs.delete(k)));
    const { replaced, ...outcome } = counts;
    return replaced ? { chunk, ...outcome, replaced } : { chunk, ...outcome };
  }
}

/** A group's results as written, and what they count. */
interface SavedPart {
  text: string;
  counts: ResultCounts;
}

type ResultCounts = Omit<ChunkOutcome, 'chunk'> & { replaced: number };

/** The result line of a contact the ESP answered for. */
function resultLine(e: { update: ContactUpdate; previous?: string }, r: ContactResult): ResultLine {
  const previous = e.previous === undefined ? {} : { previous: e.previous };
  return r.status === 'updated'
    ? { contactId: r.contactId, value: e.update.value, status: 'updated', ...previous }
    : { contactId: r.contactId, value: e.update.value, status: 'rejected', reason: r.reason };
}

function textOf(lines: ResultLine[]): string {
  return lines.map(resultLineText).join('\n') + '\n';
}

/** What the result lines of a part or results file count. */
function countText(text: string): ResultCounts {
  return countResults(text.split('\n').flatMap((raw) => (raw ? [JSON.parse(raw) as ResultLine] : [])));
}

function countResults(lines: ResultLine[]): ResultCounts {
  const counts: ResultCounts = { updated: 0, rejected: 0, rejectedByKind: {}, replaced: 0 };
  for (const line of lines) {
    if (line.status === 'updated') {
      counts.updated++;
      if (line.previous !== undefined) counts.replaced++;
    } else {
      counts.rejected++;
      const kind = rejectionKind(line.reason);
      counts.rejectedByKind[kind] = (counts.rejectedByKind[kind] ?? 0) + 1;
    }
  }
  return counts;
}

function addCounts(sum: ResultCounts, counts: ResultCounts): ResultCounts {
  sum.updated += counts.updated;
  sum.rejected += counts.rejected;
  sum.replaced += counts.replaced;
  for (const [kind, n] of Object.entries(counts.rejectedByKind)) {
    sum.rejectedByKind[kind] = (sum.rejectedByKind[kind] ?? 0) + n;
  }
  return sum;
}

function inactive(status: string): InactiveConfigurationError {
  return new InactiveConfigurationError(`the configuration became ${status} during the run; it was stopped`);
}

/** A chunk line, or the rejection that says what is wrong with it. One bad line never stops the rest. */
function parseLine(raw: string, line: number): Entry {
  const reject = (reason: string, contactId: string | null = null): Entry => ({
    result: { contactId, value: null, status: 'rejected', reason: `corrupt chunk line: ${reason}`, line },
  });
  if (raw.length > CHUNK_LINE_MAX) return reject(`longer than ${CHUNK_LINE_MAX} characters`);
  // Lines as the export writes them for ids that need no escaping (nearly all) skip JSON.parse.
  const plain = plainChunkLine(raw);
  if (plain) return { update: plain };
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch {
    return reject('not valid JSON');
  }
  // A line as the export writes it is checked by hand (every line of every chunk passes here);
  // anything else goes through the schema, which says what is wrong.
  const given = json as { contactId?: unknown; value?: unknown; previous?: unknown } | null;
  if (
    typeof given?.contactId === 'string' &&
    given.contactId.length >= 1 &&
    given.contactId.length <= 200 &&
    typeof given.value === 'string' &&
    (given.previous === undefined || typeof given.previous === 'string')
  ) {
    const update = { contactId: given.contactId, value: given.value };
    return given.previous === undefined ? { update } : { update, previous: given.previous };
  }
  const parsed = chunkLineSchema.safeParse(json);
  if (!parsed.success) {
    const id = (json as { contactId?: unknown })?.contactId;
    const issue = parsed.error.issues[0]!;
    return reject(
      `${issue.path.join('.') || 'line'}: ${issue.message}`,
      typeof id === 'string' ? id.slice(0, 200) : null,
    );
  }
  const { contactId, value, previous } = parsed.data;
  return { update: { contactId, value }, ...(previous === undefined ? {} : { previous }) };
}
