// How big each share of an ESP account is while a run holds it: the export's, the chunks' beside
// it and after it, and how many chunks a run keeps in flight (src/activities/account-share.ts
// hands them out; docs/runs.md, "Shape", says why these sizes).
import type { BaseProcessor } from '../processors/base-processor';
import { wholeRequests, type AccountLimits, type Share } from '../processors/pacing';
import type { ListMode } from '../processors/types';
import { CHUNK_LINES } from '../runs/files';

/** A share of an account: `fraction` of its rates, `slots` requests in flight. */
export interface ShareOf {
  fraction: number | Share;
  slots: number;
}

/**
 * The export beside chunks: `keeps` requests per window of the account's rate, its listing limits,
 * `slots` requests in flight (exportSlots).
 */
export function exportShare(limits: AccountLimits, keeps: number, slots = 1): ShareOf {
  return { fraction: { shared: keeps / limits.rate.requests, listing: 1, writing: 0 }, slots };
}

/**
 * Pages on their way at once when the ESP pages by offset (export-listing.ts): a listing limit of
 * its own can then be reached, which one page after another cannot (20 pages a second at 50 ms
 * each, with a long tail). Three rather than two: a page from the latency's long tail holds up
 * fewer of the pages after it (docs/performance.md has the split-limit runs with each). Not four:
 * tried on 2026-12-05, it made the Mailchimp profile faster (13.1 -> 12.4 s) but took a chunk
 * from beside the export where the listing is limited by rate (HubSpot's search: its profile
 * went from 1.16-1.18 to 1.22 of its bound; docs/performance.md, "ESP-like limits").
 */
export const PAGES_AT_ONCE = 3;

/**
 * How many requests the export beside chunk updates keeps in flight: when the ESP pages by offset
 * in this mode, PAGES_AT_ONCE, but never more than half the chunks the run may keep in flight (so
 * at least as many chunks run beside it); one otherwise. The run keeps that many fewer chunks
 * beside the export (the run's context says how many: RunContext).
 */
export function exportSlots(processor: BaseProcessor, mode: ListMode): number {
  if (processor.pageAfter(undefined, mode) === undefined) return 1;
  return Math.max(1, Math.min(PAGES_AT_ONCE, Math.floor(chunksAtOnce(processor.limits()) / 2)));
}

/** The export's slots a run sent (1 to PAGES_AT_ONCE; older runs send none: one). */
export function exportSlotsGiven(n: number | undefined): number {
  return Number.isInteger(n) && n! >= 1 && n! <= PAGES_AT_ONCE ? n! : 1;
}

/**
 * Whether `beside` chunks beside the export share the whole of the account's writing: it has a
 * writing limit of its own (which the export never uses), and each of them gets whole requests of
 * it (40 writes a second by 5 chunks; not 5 a second by 3, which would be 1 each, 3 in all: then
 * each takes 1/concurrency, and the chunks that start when the export ends the rest).
 */
export function wholeWritingBeside(limits: AccountLimits, beside: number): boolean {
  const writing = Object.values(limits.extra ?? {}).filter((l) => l.for === 'writing');
  return beside >= 1 && writing.length > 0 && writing.every((l) => Number.isInteger(l.requests / beside));
}

/**
 * Where the account's writing has a limit of its own, how many chunks run beside the export to
 * share it: two where that many may (each with whole requests of it), not as many as may. A chunk's
 * share is fixed when it starts, and the export makes chunk files one after another: five beside
 * it, each with a fifth of the writing, took 2.5 s to all be running in the split-limit benchmark,
 * and the writing was used in part meanwhile. Two use all of it from the second chunk file on, and
 * keep it in use as one ends and the next starts, since a chunk sends its next group while the
 * last answers of the one before come (update-chunk.ts). docs/performance.md has the runs with
 * one, two, three and five.
 */
export const WRITING_CHUNKS_BESIDE = 2;

/**
 * The chunks beside the export where they share the whole of a writing limit of the account's
 * own (wholeWritingBeside): the fewest from WRITING_CHUNKS_BESIDE up (one when only one may) that
 * each get whole requests of it, at most `most`; undefined when no such number.
 */
export function writingChunksBeside(limits: AccountLimits, most: number): number | undefined {
  for (let n = Math.min(WRITING_CHUNKS_BESIDE, most); n <= most; n++) {
    if (wholeWritingBeside(limits, n)) return n;
  }
  return undefined;
}

/**
 * One of `window` chunk updates in flight beside the export, which keeps `exportKeeps` requests per
 * window: 1/window of the rest of the account's rate, of its writing limits, and of its slots but
 * the export's (`exportSlots`); never more than 1/after of any of them (its share once the export
 * has ended).
 */
export function besideShare(
  processor: BaseProcessor,
  window: number,
  exportKeeps: number,
  after: number,
  exportSlots = 1,
): ShareOf {
  const { rate } = processor.limits();
  return {
    fraction: {
      shared: Math.min((1 - exportKeeps / rate.requests) / window, 1 / after),
      listing: 0,
      writing: 1 / after,
    },
    slots: Math.max(1, Math.floor((processor.descriptor.concurrency - exportSlots) / window)),
  };
}

/**
 * A chunk beside the export once its last page is in: the export sends no more than it keeps, no
 * more than `beside` chunks run beside it (as many as may, or the chunk files it makes in all, the
 * fewer), and each takes at most what the run counts it at once the export has ended (1/`after`
 * of every limit and of the slots).
 */
export function besideListedShare(
  processor: BaseProcessor,
  beside: number,
  exportKeeps: number,
  after: number,
  exportSlots = 1,
): ShareOf {
  const share = besideShare(processor, beside, exportKeeps, after, exportSlots);
  return { ...share, slots: Math.min(share.slots, windowShare(processor, after).slots) };
}

/**
 * The chunks beside the export, as the export part is told: how many run beside it at most
 * (`beside`: each takes 1/beside of what the export leaves), how many chunk files it has made, and
 * the window that caps each chunk's share (`after`: besideShare's, the run's count of it once the
 * export has ended; runs of earlier versions send none).
 */
export interface BesideChunks {
  beside: number;
  made: number;
  after?: number;
}

/**
 * What the export beside chunks may use of the account's rate, per window: what it keeps once
 * every chunk beside it runs, plus the whole requests of each chunk that cannot run yet (fewer
 * chunk files made than may run beside it), in runs whose chunks beside it each take 1/beside.
 * Each chunk counts as the most it takes: 1/beside of what the export leaves, and no more than
 * 1/after of the rate. Without `after` the cap is unknown (it is 1/beside where the chunks share a
 * writing limit of their own whole): counted as 1/(beside + 1), a chunk could take more than the
 * export left it (at worst, seven chunks of 7 a second beside an export that kept 1 of 50 and was
 * allowed 8: 57), so each then counts as 1/beside of what the export leaves.
 */
export function exportAllows(
  processor: BaseProcessor,
  side: { keeps: number; chunks?: BesideChunks },
): number {
  const { keeps, chunks } = side;
  if (!chunks) return keeps;
  const { rate } = processor.limits();
  const { beside, after } = chunks;
  const each = wholeRequests(
    Math.min((rate.requests - keeps) / beside, after ? rate.requests / after : Infinity),
  );
  return Math.max(keeps, rate.requests - Math.min(chunks.made, beside) * each);
}

/** The limits a chunk update's requests count against: the account's rate and all but listing's. */
function writingBudgets(limits: AccountLimits) {
  return [limits.rate, ...Object.values(limits.extra ?? {}).filter((l) => l.for !== 'listing')];
}

/**
 * What a holder of `fraction` of each limit a chunk counts against sends at most per window, as a
 * fraction of the account: its pacers floor its share to whole requests (wholeRequests), so a
 * sixth of 50 a second sends 8 (0.16), not 8.33. Below one request per window it is `fraction`.
 */
export function wholeFraction(limits: AccountLimits, fraction: number): number {
  return Math.min(
    ...writingBudgets(limits).map((l) =>
      l.requests * fraction < 1 ? fraction : wholeRequests(l.requests * fraction) / l.requests,
    ),
  );
}

/**
 * What the run waiting for the account may be lent beside chunks that hold `held` (each a
 * fraction of the account): the whole requests per window they leave of every limit they count
 * against, as a fraction. Each chunk's pacers floor its share to whole requests, so 1 - sum(held)
 * would lend less than is free: beside four chunks of a sixth of 50 a second (8 each) and one of
 * a fifth (10), 6 a second (0.133, floored) where 8 are free. A guest lent this, and then each
 * ending chunk's whole requests (wholeFraction), never takes more than the chunks leave.
 */
export function lentFraction(limits: AccountLimits, held: readonly number[]): number {
  const plain = Math.max(0, 1 - held.reduce((sum, f) => sum + f, 0));
  const parts = writingBudgets(limits).map((l) => {
    if (held.some((f) => l.requests * f < 1)) return plain;
    const used = held.reduce((n, f) => n + wholeRequests(l.requests * f), 0);
    return Math.max(0, l.requests - used) / l.requests;
  });
  return Math.max(plain, Math.min(1, ...parts));
}

/** One of `window` chunk updates in flight, nothing else running. */
export function windowShare(processor: BaseProcessor, window: number): ShareOf {
  const concurrency = processor.descriptor.concurrency;
  const w = Math.max(1, Math.min(window, concurrency));
  return { fraction: 1 / w, slots: Math.max(1, Math.floor(concurrency / w)) };
}

/**
 * How much of the limits every request counts against the export starts with beside chunk
 * updates: most, since the chunks wait on the listing, and a listing that cannot use it (a page
 * at a time, each waiting on the ESP) gives it back after two seconds (exportKeeps).
 */
const EXPORT_FIRST = 0.8;

/**
 * The part of a run's requests its listing sends, when the processor names its page size: pages
 * per chunk file over pages and update requests per chunk file. SendGrid's Sandbox profile lists
 * 1,000 contacts a page and writes a chunk file in one request: 10 of 11.
 */
export function listingDemand(limits: AccountLimits): number | undefined {
  if (!limits.sizes) return undefined;
  const pages = CHUNK_LINES / limits.sizes.page;
  const writes = Math.ceil(CHUNK_LINES / limits.sizes.batch);
  return pages / (pages + writes);
}

/**
 * The export's part of the limits every request counts against, while chunk updates run beside
 * it: EXPORT_FIRST, or the listing's part of the run's requests when that is more (the chunks
 * beside it could not use theirs: listingDemand), or less when the listing has a limit of its own
 * that it could not go past anyway (so the chunks get the rest, e.g. HubSpot's searches). Then
 * rounded so that each of the chunks beside it (at most chunksAtOnce - 1) has whole requests per
 * window and the export the rest: each holder's share is floored to whole requests
 * (wholeRequests), and 10 requests a second shared by 9 chunks would be 1 each, 9 in all, where
 * the export takes the one left over.
 */
export function exportFraction(limits: AccountLimits): number {
  const perMs = (r: { requests: number; perMs: number }) => r.requests / r.perMs;
  const listing = Object.values(limits.extra ?? {}).filter((l) => l.for === 'listing');
  const first = Math.max(EXPORT_FIRST, listingDemand(limits) ?? 0);
  const f =
    listing.length === 0 ? first : Math.min(first, Math.max(...listing.map(perMs)) / perMs(limits.rate));
  const rate = limits.rate.requests;
  const beside = chunksAtOnce(limits) - 1;
  if (beside < 1) return f;
  // chunksAtOnce is at most the rate's whole requests, so the export keeps one at least.
  let each = Math.max(1, Math.round(((1 - f) * rate) / beside));
  while (each > 1 && rate - each * beside < 1) each--;
  return (rate - each * beside) / rate;
}

/**
 * How many chunk updates a run keeps in flight at most: the ESP's concurrency, and no more than
 * the requests per window of each limit the chunks count against (e.g. 5 writes a second: five
 * chunks sending one each a second, never eight sending 0.6, which could land in one second).
 */
export function chunksAtOnce(limits: AccountLimits): number {
  const budgets = writingBudgets(limits).map((l) => Math.floor(l.requests));
  return Math.max(1, Math.min(limits.concurrency, ...budgets));
}
