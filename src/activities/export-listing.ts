// The export's listing: pages of contacts from the ESP, each contact that needs a value given a new
// one, written to chunk files of at most CHUNK_LINES lines (closed sooner when the listing is slow
// and the run writes chunks while it lists), with the progress file after them.
import { randomBytes } from 'node:crypto';
import type { Context } from '@temporalio/activity';
import type { BaseProcessor } from '../processors/base-processor';
import type { ContactPage, ContactRef, ListMode, ProcessorTarget } from '../processors/types';
import { CHUNK_LINE_MAX, CHUNK_LINES, chunkLineText } from '../runs/files';
import type { AccountShare } from './account-share';
import type { ExportFolder, ExportProgress } from './export-folder';
import { SeenIds } from './seen-ids';
import { HEARTBEAT_EVERY_MS } from './update-chunk';

/** A part ends after this long (at a page boundary), so the run can continue as new between parts. */
const PART_MAX_MS = 5 * 60_000;

/**
 * While the run writes chunks as the listing goes on, a chunk is also closed by time (at a page
 * boundary, as a full one is): when the ESP lists slowly, 10,000 contacts take many seconds, and
 * the run would write none of them until they are all listed, the last chunk's only after the
 * listing has ended. The export's first chunk closes once the listing has run this long, so the
 * run's first write follows its first pages (a fast listing has filled the chunk by then)...
 */
const FIRST_CHUNK_OPEN_MS = 250;
/**
 * ...and every later one once it has been open this long, so what is left to write when the
 * listing ends is at most this much of it. A chunk costs about a dozen history events and one
 * chunk-update activity (two workflow tasks, reads of the chunk and of the progress file), so
 * closes by time must stay rare:
 * - only a slow listing makes them: one that fills CHUNK_LINES within 2 s (5,000 contacts a
 *   second; the benchmark's 1,000,000 contacts on the Sandbox without limits are listed and
 *   written in about 15 s) closes every chunk by size, so a fast run gets at most its first chunk
 *   more than before;
 * - a slow one makes at most one chunk per 2 s: a part's history budget (2,000 events, some 150
 *   chunks) then lasts about PART_MAX_MS, after which the part ends anyway, so the run does not
 *   continue as new more often; and an activity's fixed cost, tens of milliseconds, is small
 *   beside 2 s of listing.
 */
const CHUNK_OPEN_MS = 2_000;
/**
 * Beside chunk updates, when the ESP says the list's size and pages by offset, the export says in
 * its progress file that its last pages are on their way once they take about this long at the
 * pace its pages have come: the chunks beside it then look at the file more often, and take its
 * share within a few tens of milliseconds of its last page rather than of their next look.
 */
const ENDS_SOON_MS = 300;

/**
 * The values espresso itself writes. A value of any other form that a contact holds is kept too,
 * unless the run is asked to replace such values.
 */
const OWN_VALUE = /^[A-Za-z0-9_-]{16,64}$/;

/** Random bytes for new values, drawn 64 KiB at a time (one call for 4,096 values, not one each). */
let pool = Buffer.alloc(0);
let taken = 0;

/** A new value: 128 random bits, base64url. Never derived from anything about the contact. */
export function newValue(): string {
  if (taken + 16 > pool.length) {
    pool = randomBytes(65_536);
    taken = 0;
  }
  taken += 16;
  return pool.toString('base64url', taken - 16, taken);
}

/** What one listing (or one part of it) reads and where it writes. */
export interface Listing {
  folder: ExportFolder;
  context: Context;
  processor: BaseProcessor;
  target: ProcessorTarget;
  /** The account's share this listing takes (its pacing; a lost lock stops the next page). */
  share: AccountShare;
  mode: ListMode;
  replaceForeignValues?: boolean;
  /** A redispatch: the earlier run's lines not updated then, written to the contacts still empty. */
  earlier?: () => AsyncIterable<{ contactId: string; value: string }>;
  /** The ids already in the folder's chunk files (a contact never gets two values); read while alive. */
  seenSoFar: () => Promise<SeenIds>;
  /**
   * A part ends once this many more chunk files are final (undefined: the listing goes to its end).
   * Only a part's chunks are written while the listing goes on, so only a part closes them by time.
   */
  stopAfterChunks?: number;
  /**
   * Pages on their way at once when the ESP pages by offset (processor.pageAfter): the listing
   * then waits on the ESP's latency once per this many pages. 1 (default): one after another.
   */
  pagesAtOnce?: number;
  partStarted: number;
  /** The activities' clock (Date.now; tests drive it). */
  now: () => number;
}

interface Counts {
  alreadySet: number;
  foreignValues: number;
  replacing: number;
}

const noCounts = (): Counts => ({ alreadySet: 0, foreignValues: 0, replacing: 0 });

/** Lines waiting for a chunk file, and what is safely in chunk files already. */
class Chunks {
  lines: string[] = [];
  private found = noCounts();

  constructor(
    private readonly folder: ExportFolder,
    private readonly share: AccountShare,
    public committed: ExportProgress,
    /** When the chunk being filled opened: the listing's start, or the page boundary of the last flush. */
    private openedAt: number,
  ) {}

  /**
   * Whether the chunk being filled has been open long enough, at `at`, to be closed by time. Never
   * while the run is its account holder's guest: its chunks start only once the account is its own,
   * so an early file would make none of them write sooner, and a small one holds a chunk's share of
   * the run's tail with little to send (two configurations on one account, on the cluster: the
   * guest's first file held 2,000 contacts, 4 writes).
   */
  dueAt(at: number): boolean {
    const openFor = this.committed.chunkCount === 0 ? FIRST_CHUNK_OPEN_MS : CHUNK_OPEN_MS;
    return this.lines.length > 0 && at - this.openedAt >= openFor && !this.share.isGuest;
  }

  add(fresh: string[], found: Counts): void {
    this.lines.push(...fresh);
    this.found.alreadySet += found.alreadySet;
    this.found.foreignValues += found.foreignValues;
    this.found.replacing += found.replacing;
  }

  /**
   * Writes the waiting lines to new chunk files; `cursor`: the first page they do not hold; `at`:
   * the page boundary where the next chunk opens (none after the listing).
   */
  async flush(cursor: string | undefined, at?: number): Promise<void> {
    if (at !== undefined) this.openedAt = at;
    const { committed, lines, found } = this;
    let chunkCount = committed.chunkCount;
    for (let i = 0; i < lines.length; i += CHUNK_LINES) {
      await this.folder.writeChunk(++chunkCount, lines.slice(i, i + CHUNK_LINES));
    }
    const next: ExportProgress = {
      cursor,
      chunkCount,
      contacts: committed.contacts + lines.length,
      alreadySet: committed.alreadySet + found.alreadySet,
      foreignValues: (committed.foreignValues ?? 0) + found.foreignValues,
      replacing: (committed.replacing ?? 0) + found.replacing,
      maintenance: committed.maintenance,
      maintenanceMs: committed.maintenanceMs,
      partsEnded: committed.partsEnded,
      ...(committed.endsSoon ? { endsSoon: true } : {}),
      ...(committed.lastChunkCount !== undefined ? { lastChunkCount: committed.lastChunkCount } : {}),
    };
    const keeps = this.share.exportKeeps(chunkCount);
    if (keeps !== undefined) next.exportKeeps = keeps;
    // New chunk files are final once the progress file counts them (written after them).
    if (chunkCount > committed.chunkCount) await this.folder.saveProgress(next);
    this.committed = next;
    this.lines = [];
    this.found = noCounts();
  }
}

/**
 * Lists from `start` (its cursor) to the last page, or, for a part, until it has made its chunk
 * files. Returns the progress the chunk files hold, and whether a part ended before the last page.
 */
export async function listIntoChunks(
  listing: Listing,
  start: ExportProgress,
): Promise<{ progress: ExportProgress; partEnded: boolean; seen: SeenIds }> {
  const { folder, context, processor, target, share, mode, earlier, now } = listing;
  const chunks = new Chunks(folder, share, start, now());
  const byTime = listing.stopAfterChunks !== undefined;
  const firstChunk = start.chunkCount;
  const stillEmpty = new SeenIds();
  let cursor = start.cursor;

  // Alive even while a slow ESP answers; the details always say what is in chunk files.
  const beat = setInterval(() => {
    context.heartbeat(chunks.committed);
    void share.check().catch(() => undefined); // a lost lock stops the next page
  }, HEARTBEAT_EVERY_MS);
  const fetchPage = async (at: string | undefined) => {
    context.cancellationSignal.throwIfAborted();
    await share.check();
    return processor.listPage(target, at, mode, share.pacing);
  };
  const ahead = new PagesAhead(
    fetchPage,
    (at, total) => processor.pageAfter(at, mode, total),
    listing.pagesAtOnce ?? 1,
  );
  const endsSoon = new EndsSoon(processor, mode, share.listsBesideChunks);
  try {
    const seen = await listing.seenSoFar();
    for (;;) {
      const page = await ahead.next(cursor);
      // The page that answered asked for the next one first (PagesAhead), a chain of promises
      // that would otherwise wait for this page to be sorted (about a millisecond of CPU per
      // 1,000 contacts): the request leaves before the page is read.
      await new Promise((resolve) => setImmediate(resolve));
      // The page boundary, timed before the next page is asked for.
      const at = now();
      if (endsSoon.after(page, at)) {
        chunks.committed = { ...chunks.committed, endsSoon: true };
        await folder.saveProgress(chunks.committed);
      }
      // The next pages are asked for at once, while this one is sorted and written: the listing
      // waits on the ESP's latency or its limit, not on both and the blob store too. (A part
      // that ends here leaves them unread: a page or two per part, and a part is many chunks.)
      ahead.askAfter(page.nextCursor);
      if (earlier) rememberEmpty(page.contacts, stillEmpty);
      const { fresh, found } = earlier
        ? { fresh: [], found: noCounts() }
        : newValues(page.contacts, seen, listing.replaceForeignValues);
      // Chunk files hold whole pages: one that does not fit the chunk being filled starts the
      // next one, so resuming from this page's cursor loses nothing.
      if (chunks.lines.length > 0 && chunks.lines.length + fresh.length > CHUNK_LINES)
        await chunks.flush(cursor, at);
      chunks.add(fresh, found);
      if (!page.nextCursor) {
        // The last page is in: the chunks beside the export may take its share before the last
        // chunk file is written (what is safely in chunk files stays as the progress file says),
        // by how many chunk files it makes in all (unless an earlier run's lines follow).
        const keeps = share.exportListed();
        if (keeps !== undefined) {
          const { committed } = chunks;
          const last = committed.chunkCount + Math.ceil(chunks.lines.length / CHUNK_LINES);
          const lastChunkCount = earlier ? undefined : Math.min(last, committed.lastChunkCount ?? last);
          chunks.committed = {
            ...committed,
            exportKeeps: keeps,
            ...(lastChunkCount !== undefined ? { lastChunkCount } : {}),
          };
          await folder.saveProgress(chunks.committed);
          context.heartbeat(chunks.committed);
        }
        break;
      }
      cursor = page.nextCursor;
      // A chunk that would not take another page like this one is written now, so the run can
      // update it while the listing goes on; so is one a part's slow listing has kept open long
      // enough. A part ends after a chunk when it has made its share of them, or at a page that
      // left nothing waiting once it has run long enough.
      const waiting = chunks.lines.length;
      const full = waiting > 0 && waiting + page.contacts.length > CHUNK_LINES;
      const closes = full || (byTime && chunks.dueAt(at));
      const made = chunks.committed.chunkCount + (closes ? 1 : 0) - firstChunk;
      const ends =
        listing.stopAfterChunks !== undefined &&
        ((closes && made >= listing.stopAfterChunks) ||
          ((closes || waiting === 0) && at - listing.partStarted >= PART_MAX_MS));
      // Nothing listed waits for a chunk file: a retry resumes from the next page.
      if (closes || (waiting === 0 && !earlier)) await chunks.flush(cursor, at);
      if (ends) {
        const progress = { ...chunks.committed, partsEnded: (chunks.committed.partsEnded ?? 0) + 1 };
        await folder.saveProgress(progress);
        return { progress, partEnded: true, seen };
      }
      context.heartbeat(chunks.committed);
    }
    cursor = undefined;
    if (earlier) {
      // The earlier run's values of the contacts that are still empty, in its order.
      for await (const line of earlier()) {
        if (stillEmpty.has(line.contactId) && seen.add(line.contactId))
          chunks.lines.push(JSON.stringify(line));
        if (chunks.lines.length >= CHUNK_LINES) await chunks.flush(cursor);
      }
    }
    await chunks.flush(cursor);
    return { progress: chunks.committed, partEnded: false, seen };
  } finally {
    clearInterval(beat);
    // Pages asked for ahead and not needed (the part ended, or failed) end before the part
    // does: no request of this part outlives it.
    await ahead.settled();
  }
}

/**
 * Whether the listing's last pages are on their way (ENDS_SOON_MS): true once, after the page
 * that makes it so. Only for an export beside chunk updates on an ESP that pages by offset and
 * says the list's size; the pace is the mean time between the pages read so far.
 */
class EndsSoon {
  private said: boolean;
  private firstAt?: number;
  private pages = 0;

  constructor(
    private readonly processor: BaseProcessor,
    private readonly mode: ListMode,
    besideChunks: boolean,
  ) {
    // By cursor, the pages left are not known (pageAfter knows no page after the first).
    this.said = !besideChunks || processor.pageAfter(undefined, mode) === undefined;
  }

  after(page: ContactPage, at: number): boolean {
    if (this.said || !page.nextCursor || page.total === undefined) return false;
    this.firstAt ??= at;
    this.pages++;
    if (this.pages < 2) return false;
    const pace = Math.max(1, (at - this.firstAt) / (this.pages - 1));
    // The pages still to read, counted up to those that take ENDS_SOON_MS at that pace.
    let left = 1;
    for (let c: string | undefined = page.nextCursor; left * pace <= ENDS_SOON_MS; left++) {
      c = this.processor.pageAfter(c, this.mode, page.total);
      if (c === undefined) return (this.said = true);
    }
    return false;
  }
}

/**
 * The pages a listing has asked for and not read yet, in order. With cursor chains one at a time
 * (the page after the one just read); when the ESP pages by offset, up to `atOnce` on their way
 * and as many again answered and waiting to be read, the later ones named before the earlier
 * answer. Counting the answered ones as on their way left slots idle behind a slow page: the
 * pages after it had answered, and no new one was asked until it did. A page that ends short (the
 * list's end, or a list that changed) names a next page other than the one asked for: those asked
 * after it are dropped (awaited at the end, never read) and the listing goes on from the page it
 * named. Where the ESP says the list's size with each page (ContactPage.total), no page past it is
 * asked ahead: only those asked before the first answer, and the one a full last page names (a
 * contact added meanwhile would be there), may be past the end (and empty).
 */
class PagesAhead {
  private asked: Array<{ cursor: string | undefined; page: Promise<ContactPage>; dropped?: boolean }> = [];
  private dropped: Array<Promise<unknown>> = [];
  /** Pages asked for and not answered yet (read or not). */
  private onTheirWay = 0;
  /** The list's size, as the page answered last said (when the ESP says). */
  private total: number | undefined;

  constructor(
    private readonly fetch: (cursor: string | undefined) => Promise<ContactPage>,
    private readonly after: (cursor: string | undefined, total: number | undefined) => string | undefined,
    private readonly atOnce: number,
  ) {}

  /** The next page: the first asked for, or the one at `cursor` (and those after it) when none was. */
  next(cursor: string | undefined): Promise<ContactPage> {
    if (this.asked.length === 0) {
      this.ask(cursor);
      this.fill();
    }
    return this.asked.shift()!.page;
  }

  /** Asks for the page at `cursor` (the one the page just read names) and, by offset, those after it. */
  askAfter(cursor: string | undefined): void {
    if (cursor === undefined || this.asked[0]?.cursor !== cursor) this.drop();
    if (cursor === undefined) return;
    if (this.asked.length === 0) this.ask(cursor);
    this.fill();
  }

  async settled(): Promise<void> {
    this.drop();
    await Promise.all(this.dropped);
  }

  private fill(): void {
    while (this.asked.length > 0 && this.asked.length < 2 * this.atOnce && this.onTheirWay < this.atOnce) {
      const later = this.after(this.asked[this.asked.length - 1]!.cursor, this.total);
      if (later === undefined) return;
      this.ask(later);
    }
  }

  private ask(cursor: string | undefined): void {
    this.onTheirWay++;
    const entry: (typeof this.asked)[number] = { cursor, page: this.fetch(cursor) };
    // An answer frees its place on the way: the next page is asked at once, unless this one was dropped.
    const answered = (page?: ContactPage) => {
      this.onTheirWay--;
      if (page?.total !== undefined) this.total = page.total;
      if (!entry.dropped) this.fill();
    };
    entry.page.then(answered, () => answered());
    this.asked.push(entry);
  }

  private drop(): void {
    for (const entry of this.asked.splice(0)) {
      entry.dropped = true;
      this.dropped.push(entry.page.catch(() => undefined));
    }
  }
}

/** A redispatch lists only to learn which contacts are still empty. */
function rememberEmpty(contacts: ContactRef[], stillEmpty: SeenIds): void {
  for (const { contactId, currentValue } of contacts) {
    if (currentValue === undefined || currentValue === '') stillEmpty.add(contactId);
  }
}

/**
 * The chunk lines of a page: a new value for each contact seen for the first time that holds none.
 * A contact that holds a value keeps it, whatever its form (stable once written), unless the
 * operator asked to replace foreign ones (and its line can say what it replaces).
 */
function newValues(
  contacts: ContactRef[],
  seen: SeenIds,
  replaceForeignValues: boolean | undefined,
): { fresh: string[]; found: Counts } {
  const fresh: string[] = [];
  const found = noCounts();
  for (const { contactId, currentValue: value } of contacts) {
    if (!seen.add(contactId)) continue;
    if (value === undefined || value === '') {
      fresh.push(chunkLineText(contactId, newValue()));
      continue;
    }
    const foreign = !OWN_VALUE.test(value);
    const replacing =
      foreign && replaceForeignValues
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
  return { fresh, found };
}
