import { setMaxListeners } from 'node:events';
import { Context } from '@temporalio/activity';
import type { ActivityDeps } from './deps';
import type { BaseProcessor } from '../processors/base-processor';
import { PacerSet } from '../processors/pacing';
import type { ProcessorTarget } from '../processors/types';
import { NotFoundError, type BlobStore, type StoredBlob } from '../storage';
import { readChunkWindow } from './chunk-windows';
import {
  besideListedShare,
  besideShare,
  exportAllows,
  exportFraction,
  exportShare,
  wholeFraction,
  windowShare,
  type BesideChunks,
  type ShareOf,
} from './share-sizes';
import {
  accountLockKey,
  AccountLocks,
  LOCK_TTL_MS,
  LockLostError,
  type GuestShare,
  type LockOwner,
} from '../runs/account-lock';

/** A run renews its account lock this often while one of its activities calls the ESP. */
const RENEW_EVERY_MS = 60_000;
/** …and looks this often whether a 429 on another worker paused the account. */
const PAUSE_CHECK_MS = 2_000;
/**
 * A chunk that follows its run reads the export's progress file, or the chunk windows file, this
 * often: ten small reads a second while it writes beside other chunks (a chunk alone follows
 * nothing). Every 200 ms, a share that grew waited longer to be taken: one and two workers on one
 * account measured 45.3 and 45.5 requests/s, against 45.7 to 46.8 at 100 ms (docs/scale.md). At
 * 50 ms the Iterable profile had a request answered 429 in both of two fresh-clone benchmarks.
 * The figures at 100 and 50 ms were measured while every other look was skipped (until
 * 2026-12-07: follow()), so those chunks looked every 100 to 200 and every 50 to 100 ms.
 */
const FOLLOW_MS = 100;
/**
 * Once the export says its last pages are on their way (export-listing.ts, ENDS_SOON_MS), a chunk
 * beside it reads its progress file this often, for this long at most, until the export has
 * listed: its share grows a few tens of milliseconds after the last page, not up to FOLLOW_MS
 * (and a read another chunk of the process made as long before) after.
 */
const FOLLOW_SOON_MS = 20;
const FOLLOW_SOON_FOR_MS = 2_000;
/**
 * Reads of the files chunks follow, by blob store and key: one read serves every chunk of this
 * worker process that follows the same run and looks within most of its own interval (FOLLOW_MS,
 * or FOLLOW_SOON_MS) of the read's start (ten chunks of a run on three workers read each file about
 * 30 times a second, not 100). The file stays the only truth, and a read at most that much older
 * than a chunk's own only ever gives it less: what the export holds only shrinks, and the shares
 * the chunk windows file gives only grow.
 */
const followedReads = new WeakMap<BlobStore, Map<string, { read: Promise<StoredBlob>; at: number }>>();

function readFollowed(blobs: BlobStore, key: string, withinMs = FOLLOW_MS): Promise<StoredBlob> {
  let reads = followedReads.get(blobs);
  if (!reads) followedReads.set(blobs, (reads = new Map()));
  const shared = reads.get(key);
  // Not a chunk's own last read, whose next look comes one interval after it (or a hair sooner).
  if (shared && Date.now() - shared.at < withinMs * 0.8) return shared.read;
  const entry = { read: blobs.get(key), at: Date.now() };
  reads.set(key, entry);
  const forget = () => {
    const left = FOLLOW_MS - (Date.now() - entry.at);
    const drop = () => void (reads.get(key) === entry && reads.delete(key));
    if (left <= 0) drop();
    else setTimeout(drop, left).unref();
  };
  entry.read.then(forget, forget);
  return entry.read;
}

/**
 * A guest looks at the lock this often: its first share, and each larger one, comes as one of the
 * holder's last chunks ends, and what it does not take meanwhile the account loses (a read of the
 * lock each time, for the few seconds the holder's last chunks take to end).
 */
const GUEST_LOOK_MS = 25;
/**
 * A guest lent nothing yet looks that often for this long (the holder tells it a little before
 * its last chunks run: a second or two on the limits measured), then this often.
 */
const GUEST_LOOKS_OFTEN_FOR_MS = 10_000;
const GUEST_LOOK_SLOWLY_MS = 250;

/** The export gives back what it does not use once it has listed this long... */
const EXPORT_MEASURED_AFTER_MS = 2_000;
/** ...keeping this much over its average rate so far. */
const EXPORT_HEADROOM = 1.25;

/**
 * What one activity of a run may use of its ESP account: a share of the account's limits
 * (`fraction` of every rate, `slots` requests in flight). Shares are enough because the run holds
 * the account's lock: no other run calls the account, and the run's own activities in flight at
 * once take shares that add up to at most the whole. A chunk's share only grows while it writes
 * (the export's only shrinks, before it says so): what one side gives up, the other takes only
 * after reading it in the blob store. `check()` before each stretch of requests keeps the lock
 * (and stops the work if it was lost) and hears of 429s on other workers.
 */
export class AccountShare {
  /** Its share changes in place (reshare): requests waiting for their start follow it. */
  readonly pacing: PacerSet;
  private readonly locks: AccountLocks;
  private readonly key: string;
  private renewedAt = 0;
  private pauseCheckedAt = 0;
  /** Its share as the run's own: what it uses once the run holds the account. */
  private base: ShareOf;
  /**
   * While the run is the account holder's guest: what the holder lends it, which caps every
   * limit of its share; read in the lock every GUEST_LOOK_MS until the lock is the run's.
   */
  private guest?: { share: GuestShare; lookedAt: number; looking: boolean; lost?: Error };
  /**
   * A chunk that follows its run: beside the export, the export's progress file (what the export
   * keeps of the account's rate, and when it has ended); then the run's chunk windows file, where
   * the run gives it a larger share as other chunks end.
   */
  private following?: {
    chunk?: number;
    /** 1/window of the account is its share (of what the export leaves, while beside it). */
    window: number;
    beside?: {
      progressKey: string;
      after: number;
      exportKeeps: number;
      byChunkCount?: boolean;
      keepsOneForGuest?: boolean;
      exportSlots: number;
      /** Its last page is in: the chunk takes its share by the chunk files the export makes. */
      listed?: boolean;
    };
    windowsKey?: string;
    lookedAt: number;
    looking: boolean;
    /** Until when it looks every FOLLOW_SOON_MS (the export's last pages are on their way). */
    soonUntil?: number;
  };
  /**
   * The export beside chunks: what it keeps of the account's rate per window once every chunk
   * beside it runs, what it may use now (allows), and since when it has listed.
   */
  private exportSide?: {
    keeps: number;
    allows: number;
    since: number;
    /** Requests sent before `since` (as a guest: not measured). */
    sentBefore?: number;
    slots: number;
    chunks?: BesideChunks;
  };

  constructor(
    private readonly deps: ActivityDeps,
    private readonly processor: BaseProcessor,
    target: ProcessorTarget,
    share: ShareOf,
    /** The run's lock; runs of earlier versions hold none. */
    private readonly owner?: LockOwner,
  ) {
    this.locks = new AccountLocks(deps.stores.blobs);
    this.key = accountLockKey(processor.descriptor.id, target.espAccountId);
    this.pacing = this.pacerSet(share);
    this.base = share;
  }

  private pacerSet(share: ShareOf): PacerSet {
    const esp = this.processor.descriptor.id;
    const { cancellationSignal } = Context.current();
    // Every request in flight listens to it (it aborts the request): an activity's share of a
    // concurrent ESP has many, and Node would warn past 10 as if they leaked.
    setMaxListeners(1_000, cancellationSignal);
    return new PacerSet(this.processor.limits(), share.fraction, share.slots, {
      onWait: (ms) => this.deps.metrics?.rateLimitWait.inc({ esp }, ms / 1000),
      onPause: (until) => {
        if (this.owner) void this.locks.pause(this.key, this.owner, until).catch(() => undefined);
      },
      // A cancelled activity (the run was cancelled, or passed its deadline, or its worker stops)
      // sends nothing more, and what it has in flight stops.
      signal: cancellationSignal,
    });
  }

  /** The whole account, for one activity at a time (maintenance, export). */
  static whole(deps: ActivityDeps, processor: BaseProcessor, target: ProcessorTarget, owner?: LockOwner) {
    return new AccountShare(
      deps,
      processor,
      target,
      { fraction: 1, slots: processor.descriptor.concurrency },
      owner,
    );
  }

  /** One of `window` chunk updates in flight; with `follow`, it reads the run's chunk windows file. */
  static ofWindow(
    deps: ActivityDeps,
    processor: BaseProcessor,
    target: ProcessorTarget,
    window: number,
    owner?: LockOwner,
    follow?: FollowRun,
  ) {
    const share = new AccountShare(deps, processor, target, windowShare(processor, window), owner);
    // A chunk alone has the whole account already.
    if (follow && window > 1) share.following = { ...follow, window, lookedAt: 0, looking: false };
    return share;
  }

  /**
   * The export while chunk updates run beside it (dispatch while exporting): the whole of the
   * listing limits, its part of the shared ones (exportFraction), and `slots` requests in flight
   * (share-sizes.ts, exportSlots: one, or up to PAGES_AT_ONCE pages on their way when the ESP pages by offset).
   */
  static exportBesideChunks(
    deps: ActivityDeps,
    processor: BaseProcessor,
    target: ProcessorTarget,
    owner?: LockOwner,
    /** What an earlier part or attempt kept (the progress file): never more than that. */
    keptBefore?: number,
    /** Runs whose chunks beside it each take 1/beside of what it leaves, and the chunk files made so far. */
    chunks?: BesideChunks,
    slots = 1,
  ) {
    const limits = processor.limits();
    const keeps = Math.min(exportFraction(limits) * limits.rate.requests, keptBefore ?? Infinity);
    const side = { keeps, since: Date.now(), chunks, allows: 0, slots };
    side.allows = exportAllows(processor, side);
    const share = new AccountShare(deps, processor, target, exportShare(limits, side.allows, slots), owner);
    share.exportSide = side;
    return share;
  }

  /** Whether the run is still its account holder's guest (what it sends is capped by the lent share). */
  get isGuest(): boolean {
    return this.guest !== undefined;
  }

  /** Whether this is the export beside chunk updates, told how many run beside it. */
  get listsBesideChunks(): boolean {
    return this.exportSide?.chunks !== undefined;
  }

  /**
   * The export beside chunks gives back what it does not use (a page at a time, it may list slower
   * than its share allows): once it has listed a while, it keeps a quarter over its average rate
   * so far, never more than before. And while it has made fewer chunk files than may run beside
   * it, it also uses the shares of the chunks that cannot run yet: `chunksMade`, the chunk files
   * it is about to say are final, can. Returns what it keeps, for the progress file, where the
   * chunks read it and take the rest: the export lowers its pacing first, so the two never add up
   * to more than the account's rate. Undefined for any other share.
   */
  exportKeeps(chunksMade?: number): number | undefined {
    const side = this.exportSide;
    if (!side) return undefined;
    const elapsed = Date.now() - side.since;
    if (elapsed >= EXPORT_MEASURED_AFTER_MS && !this.guest) {
      const { rate } = this.processor.limits();
      const used = ((this.pacing.started - (side.sentBefore ?? 0)) / elapsed) * rate.perMs;
      side.keeps = Math.min(side.keeps, Math.max(1, Math.ceil(used * EXPORT_HEADROOM)));
    }
    if (side.chunks && chunksMade !== undefined) side.chunks.made = Math.max(side.chunks.made, chunksMade);
    const allows = exportAllows(this.processor, side);
    if (allows < side.allows) {
      side.allows = allows;
      this.reshare(exportShare(this.processor.limits(), allows, side.slots));
    }
    return side.keeps;
  }

  /**
   * The export beside chunks has its last page: it sends nothing more, so it keeps only its slots'
   * part of the account's rate (what the chunks the run starts in its place take once it has
   * ended), lowers its pacing to that, and returns it for the progress file. The chunks beside it
   * take the rest as soon as they read it, not after the last chunk file, the manifest and the
   * progress file that says the export has ended (each a write to the blob store: on S3 the chunks
   * wrote at their old shares meanwhile). A retry of the export, which may list its last pages
   * again, keeps no more than this. Undefined for any other share, or an export of a run that does
   * not say how many chunks run beside it.
   */
  exportListed(): number | undefined {
    const side = this.exportSide;
    if (!side?.chunks) return undefined;
    const { rate } = this.processor.limits();
    const keeps = Math.min(side.keeps, (rate.requests * side.slots) / (side.chunks.beside + side.slots));
    if (keeps < side.allows) {
      side.allows = keeps;
      this.reshare(exportShare(this.processor.limits(), keeps, side.slots));
    }
    side.keeps = keeps;
    return keeps;
  }

  /**
   * One of `window` chunk updates in flight beside the export: 1/window of the writing limits and
   * of what the export leaves of the shared ones, and of the slots but the export's one. Once the
   * export's progress file says it has ended, 1/`after` of the whole account (ofWindow), `after`
   * being the window the run counts it in from then on: `window`, or one more chunk than beside
   * the export when the run keeps it full (the export's slot is free). Before that it takes at most
   * 1/`after` of every limit, so however late it reads that the export has ended, it and the chunk
   * the run starts in the export's place never add up to more than the account. With
   * `byChunkCount`, once the export has ended, 1/(the chunk files it made) when that is fewer than
   * `after`: no more chunks than that can be in flight (the run counts it so too); with
   * `keepsOneForGuest` as well, one more (the run lends that share to the run waiting for the
   * account). The export holds `exportSlots` of the account's slots meanwhile.
   */
  static ofWindowBesideExport(
    deps: ActivityDeps,
    processor: BaseProcessor,
    target: ProcessorTarget,
    window: number,
    exportProgressKey: string,
    owner?: LockOwner,
    after = window,
    follow?: FollowRun,
    byChunkCount?: boolean,
    exportSlots = 1,
    keepsOneForGuest = false,
  ) {
    const limits = processor.limits();
    const exportKeeps = exportFraction(limits) * limits.rate.requests;
    const w = Math.max(1, Math.min(window, processor.descriptor.concurrency - exportSlots));
    const a = Number.isInteger(after) && after > w ? after : w;
    const share = new AccountShare(
      deps,
      processor,
      target,
      besideShare(processor, w, exportKeeps, a, exportSlots),
      owner,
    );
    share.following = {
      ...follow,
      window: w,
      beside: {
        progressKey: exportProgressKey,
        after: a,
        exportKeeps,
        ...(byChunkCount ? { byChunkCount } : {}),
        ...(byChunkCount && keepsOneForGuest ? { keepsOneForGuest } : {}),
        exportSlots,
      },
      lookedAt: 0,
      looking: false,
    };
    return share;
  }

  /**
   * Throws LockLostError when another run took the account (this run's lock had expired). A
   * guest's share follows what the holder lends it, and is the run's own once the lock is: the
   * first check waits until the holder lends it something.
   */
  async check(): Promise<void> {
    if (!this.owner) return;
    if (this.guest) return this.followGuest(this.guest);
    const now = Date.now();
    if (now - this.renewedAt >= RENEW_EVERY_MS || now - this.renewedAt >= LOCK_TTL_MS / 2) {
      const { pausedUntil, guest } = await this.locks.renew(this.key, this.owner);
      this.renewedAt = this.pauseCheckedAt = now;
      this.pacing.pauseUntil(pausedUntil);
      if (guest) await this.waitAsGuest(guest);
    } else if (now - this.pauseCheckedAt >= PAUSE_CHECK_MS) {
      this.pauseCheckedAt = now;
      this.pacing.pauseUntil(await this.locks.pausedUntil(this.key, this.owner));
    }
  }

  /**
   * The run is the holder's guest: until the holder lends it some of the account, it waits (its
   * activity beating meanwhile), looking every GUEST_LOOK_MS (GUEST_LOOK_SLOWLY_MS after a while);
   * then its share is capped at what it is lent, follows it as often, and its first request waits
   * one of its intervals from the last request of a chunk whose share it took (quietSince).
   */
  private async waitAsGuest(lent: GuestShare): Promise<void> {
    const { cancellationSignal } = Context.current();
    let share = lent;
    const since = Date.now();
    while (share.fraction <= 0 || share.slots < 1) {
      const slowly = Date.now() - since > GUEST_LOOKS_OFTEN_FOR_MS;
      await new Promise((resolve) => setTimeout(resolve, slowly ? GUEST_LOOK_SLOWLY_MS : GUEST_LOOK_MS));
      cancellationSignal.throwIfAborted();
      const standing = await this.locks.standing(this.key, this.owner!);
      if (standing.role === 'lost') throw new LockLostError(standing.why);
      if (standing.role === 'holder') return this.ownAccount();
      share = standing.share;
    }
    this.beGuest(share, Date.now());
    this.pacing.takeOver(share.quietSince ? Math.max(0, Date.now() - share.quietSince) : 0);
  }

  /**
   * Another share of the same activity takes over from this one (the listing after maintenance):
   * it is a guest too when this one still is, without reading the lock again, and this one stops
   * following the lock (it sends nothing more).
   */
  passGuestTo(next: AccountShare): void {
    const guest = this.guest;
    if (!guest || guest.lost) return;
    next.renewedAt = next.pauseCheckedAt = this.renewedAt;
    next.beGuest(guest.share, guest.lookedAt);
    guest.lost = new Error('this share handed its requests to another');
  }

  /** Capped at what it is lent, and following it. */
  private beGuest(share: GuestShare, lookedAt: number): void {
    const { cancellationSignal } = Context.current();
    const guest: NonNullable<AccountShare['guest']> = { share, lookedAt, looking: false };
    this.guest = guest;
    this.reshare(this.base);
    // Followed while it waits on a request too (maintenance checks once), for a minute at most
    // (an activity that has ended may leave it): checks follow it as well.
    const until = Date.now() + 60_000;
    const timer = setInterval(() => {
      if (this.guest !== guest || guest.lost || cancellationSignal.aborted || Date.now() > until)
        clearInterval(timer);
      else this.followGuest(guest);
    }, GUEST_LOOK_MS);
    timer.unref();
  }

  /** Every GUEST_LOOK_MS, without waiting for it: what the holder lends now, or the lock is the run's. */
  private followGuest(guest: NonNullable<AccountShare['guest']>): void {
    if (guest.lost) throw guest.lost;
    if (guest.looking || Date.now() - guest.lookedAt < GUEST_LOOK_MS) return;
    guest.looking = true;
    void this.locks
      .standing(this.key, this.owner!)
      .then((standing) => {
        this.pacing.pauseUntil(standing.pausedUntil);
        if (standing.role === 'lost') guest.lost = new LockLostError(standing.why);
        else if (standing.role === 'holder') this.ownAccount();
        else if (standing.share.fraction > guest.share.fraction || standing.share.slots > guest.share.slots) {
          guest.share = standing.share;
          this.reshare(this.base);
        }
      })
      .catch(() => undefined) // looked at again on the next check
      .finally(() => {
        guest.looking = false;
        guest.lookedAt = Date.now();
      });
  }

  /** The lock is the run's (its holder gave it back): its share is whole again, renewed from now on. */
  private ownAccount(): void {
    this.guest = undefined;
    this.renewedAt = this.pauseCheckedAt = Date.now();
    // What the export used as a guest says nothing of what it can use: it is measured from now.
    if (this.exportSide) {
      this.exportSide.since = Date.now();
      this.exportSide.sentBefore = this.pacing.started;
    }
    this.reshare(this.base);
  }

  /**
   * A chunk that follows its run takes the larger share the run gives it: beside the export, what
   * the export gives back, and 1/after of the account once it has listed its last page; then what
   * the chunk windows file gives it. Its pacing grows in place (requests in flight keep their
   * slots), so this may run at any time: the chunk calls it every FOLLOW_MS while it writes
   * (followEvery). A look counts from its start: counted from its end (until 2026-12-07), every
   * other tick came too soon and was skipped, and the chunk looked every 100 to 200 ms.
   */
  async follow(): Promise<void> {
    const f = this.following;
    if (!f || f.looking || Date.now() - f.lookedAt < this.followInterval() / 2) return;
    f.looking = true;
    f.lookedAt = Date.now();
    try {
      if (f.beside) await this.followExport(f, f.beside);
      else if (f.windowsKey && f.chunk !== undefined) {
        const blobs = this.deps.stores.blobs;
        const window = await readChunkWindow((key) => readFollowed(blobs, key), f.windowsKey, f.chunk);
        if (window !== undefined && window < f.window) {
          f.window = window;
          this.reshare(windowShare(this.processor, window));
        }
      }
    } finally {
      f.looking = false;
    }
  }

  private async followExport(
    f: NonNullable<AccountShare['following']>,
    beside: NonNullable<NonNullable<AccountShare['following']>['beside']>,
  ): Promise<void> {
    let saved: {
      ended?: unknown;
      exportKeeps?: unknown;
      chunkCount?: unknown;
      lastChunkCount?: unknown;
      endsSoon?: unknown;
    } = {};
    try {
      const read = readFollowed(this.deps.stores.blobs, beside.progressKey, this.followInterval());
      saved = JSON.parse((await read).body.toString('utf8'));
    } catch (err) {
      // Not there yet, or unreadable: the export runs on as far as this chunk knows.
      if (!(err instanceof NotFoundError) && !(err instanceof SyntaxError)) throw err;
    }
    // The window the run counts this chunk in once the export has ended, by the chunk files made.
    const afterWindow = (made: unknown) =>
      beside.byChunkCount && isCount(made)
        ? Math.min(beside.after, made + (beside.keepsOneForGuest ? 1 : 0))
        : beside.after;
    if (saved.endsSoon === true && !beside.listed && f.soonUntil === undefined)
      f.soonUntil = Date.now() + FOLLOW_SOON_FOR_MS;
    // Every chunk beside the export grows at once when it gives its share back: each staggers its
    // next request by its number among them (Pacer.stagger), or by chance when it has none.
    const part = f.chunk !== undefined ? (f.chunk % f.window) / f.window : Math.random();
    const grow = (share: ShareOf) => {
      this.reshare(share);
      this.pacing.stagger(part);
    };
    if (saved.ended === true) {
      const window = afterWindow(saved.chunkCount);
      f.soonUntil = 0; // back to FOLLOW_MS
      f.beside = undefined;
      f.window = window;
      grow(windowShare(this.processor, window));
    } else if (
      isCount(saved.lastChunkCount) &&
      typeof saved.exportKeeps === 'number' &&
      !(beside.listed && saved.exportKeeps >= beside.exportKeeps)
    ) {
      // The last page is in: the export's share goes to the chunks beside it now, not once its
      // last chunk file, manifest and progress file are written and read (a small run's chunks,
      // fewer than may run at once, wrote at 1/concurrency of the account meanwhile). No more
      // chunks than the export makes in all run beside it.
      beside.listed = true;
      f.soonUntil = 0; // back to FOLLOW_MS
      beside.exportKeeps = Math.min(beside.exportKeeps, saved.exportKeeps);
      grow(
        besideListedShare(
          this.processor,
          Math.min(f.window, saved.lastChunkCount),
          beside.exportKeeps,
          afterWindow(saved.lastChunkCount),
          beside.exportSlots,
        ),
      );
    } else if (
      !beside.listed &&
      typeof saved.exportKeeps === 'number' &&
      saved.exportKeeps < beside.exportKeeps
    ) {
      beside.exportKeeps = saved.exportKeeps;
      grow(besideShare(this.processor, f.window, saved.exportKeeps, beside.after, beside.exportSlots));
    }
  }

  /**
   * A chunk of the run's tail has had its last request answered: its share goes to the run the
   * holder lends to, when there is one (AccountLocks.lendEnded), while the chunk writes its results.
   */
  async lendOnEnd(chunk: number): Promise<void> {
    if (!this.owner) return;
    const { fraction, slots } = this.base;
    const quiet = this.pacing.quietMs();
    const held = typeof fraction === 'number' ? fraction : Math.min(fraction.shared, fraction.writing);
    await this.locks.lendEnded(this.key, this.owner, chunk, {
      // What it sent at most of every limit it uses (a chunk beside the export has none of the
      // listing's): its whole requests per window, which the guest was lent the rest beside.
      fraction: wholeFraction(this.processor.limits(), held),
      slots,
      ...(quiet !== undefined ? { quietSince: Date.now() - quiet } : {}),
    });
  }

  /**
   * Reads the lock every PAUSE_CHECK_MS (renewing it when due) while the activity calls the ESP,
   * so a 429 another worker met pauses this share within that, however long the activity goes
   * between its own checks (a chunk checks once per group of batches). Returns the stop.
   */
  watchPauses(): () => void {
    if (!this.owner) return () => undefined;
    const timer = setInterval(() => void this.check().catch(() => undefined), PAUSE_CHECK_MS);
    return () => clearInterval(timer);
  }

  /** A chunk that follows its run: every FOLLOW_MS (FOLLOW_SOON_MS a while) until stopped. */
  followEvery(): () => void {
    if (!this.following) return () => undefined;
    let timer: NodeJS.Timeout;
    const next = () => {
      timer = setTimeout(() => {
        next();
        void this.follow().catch(() => undefined);
      }, this.followInterval());
    };
    next();
    return () => clearTimeout(timer);
  }

  private followInterval(): number {
    const until = this.following?.soonUntil;
    return until !== undefined && Date.now() < until ? FOLLOW_SOON_MS : FOLLOW_MS;
  }

  /** Its share as the run's own is `share`; while a guest, what it is lent caps it. */
  private reshare(share: ShareOf): void {
    this.base = share;
    const used = this.guest ? lentPart(share, this.guest.share) : share;
    this.pacing.reshare(this.processor.limits(), used.fraction, used.slots);
  }
}

function isCount(n: unknown): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n >= 1;
}

/** `share`, no more of any limit than a guest is lent. */
function lentPart(share: ShareOf, lent: GuestShare): ShareOf {
  const f = share.fraction;
  const sides = typeof f === 'number' ? { shared: f, listing: f, writing: f } : f;
  return {
    fraction: {
      shared: Math.min(sides.shared, lent.fraction),
      listing: Math.min(sides.listing, lent.fraction),
      writing: Math.min(sides.writing, lent.fraction),
    },
    slots: Math.max(1, Math.min(share.slots, lent.slots)),
  };
}

/** Where a chunk reads the larger shares its run gives it (the run's chunk windows file). */
export interface FollowRun {
  chunk: number;
  windowsKey: string;
}
