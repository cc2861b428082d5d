import type { NamedLimit } from './types';

/**
 * Requests are spaced a little wider than the published limit: the ESP counts arrival times, and
 * network jitter can bunch requests that left evenly spaced.
 */
const SAFETY_MARGIN = 0.05;
/**
 * A request that waited for its slot and woke late (a timer fires a millisecond or more after its
 * time, more on a busy event loop) counts as started when its slot opened, if it is late by no
 * more than this part of the limit's window: otherwise the lateness of every wake adds up, and a
 * worker beside PostgreSQL and the Temporal server on two cores kept 4% under its rate. Starts are
 * then at most this much after evenly spaced slots, so any window holds no more than the limit
 * while this and the network's jitter stay within SAFETY_MARGIN of it.
 */
const LATE_CREDIT = 0.01;
/**
 * A request waiting for its start looks again this often (whether its activity was cancelled),
 * and at once when one of its pacers is reset: waking only this often, a chunk whose share grew
 * as the export ended sent its next request up to 100 ms late (two configurations on one account
 * on the cluster: 29 to 160 ms from an export's last page to the next request; docs/scale.md).
 */
const RECHECK_MS = 100;
/**
 * After a rate grows, the next request keeps the old spacing, but waits no more than this many of
 * the new intervals: the old spacing of a chunk beside the export (a request a second) held each
 * chunk up to a second when the export ended (43.9 requests/s on one account, against 45.5 with
 * this); the new spacing at once put one request over the limit on the Iterable profile's 5
 * writes a second. docs/scale.md, "What moved them", has the story.
 */
const GROWTH_HOLD_INTERVALS = 2;

/**
 * Client-side pacing of one stream of requests: at most `concurrency` in flight, and request
 * starts spaced evenly at the rate (no bursts, so a sliding-window limit on the ESP side is never
 * crossed). After a 429 every caller waits out the ESP's delay (`pause`).
 */
export class Pacer {
  private inFlight = 0;
  private readonly waiting: Array<() => void> = [];
  private pausedUntil = 0;
  /** Spacing of request starts: the last one's, and the one the next request keeps to. */
  private intervalMs = 0;
  /** After a rate that grew: the spacing the next request keeps at least (then intervalMs). */
  private keepOnce?: number;
  /**
   * When the last request started (undefined: none yet), or when its slot opened if it woke late
   * for it by no more than lateCreditMs.
   */
  private lastStart?: number;
  private lateCreditMs = 0;
  /** Requests waiting for their start under this pacer (or it among others): woken by reset. */
  private readonly sleepers = new Set<() => void>();

  constructor(
    rateLimit: { requests: number; perMs: number },
    private concurrency: number,
    private readonly now: () => number = Date.now,
    /** Told how long each request waited before being sent (metrics). */
    private readonly onWait?: (ms: number) => void,
  ) {
    this.reset(rateLimit, concurrency);
  }

  /**
   * A new rate and concurrency for the requests still to come, and those waiting for a slot get
   * one as soon as the new concurrency has room (requests in flight keep theirs). A lower rate
   * spaces the next request from the last one at once (or as a growth before it holds it, if
   * longer); a higher one from the request after it:
   * the next keeps the old spacing (at most GROWTH_HOLD_INTERVALS new ones), so what the share's
   * earlier holder (a chunk that ended, the export) sent leaves the ESP's window as this holder
   * adds to it.
   */
  reset(rateLimit: { requests: number; perMs: number }, concurrency: number): void {
    if (rateLimit.requests <= 0 || rateLimit.perMs <= 0 || concurrency <= 0) {
      throw new RangeError('rate limit and concurrency must be positive');
    }
    const interval = (rateLimit.perMs / rateLimit.requests) * (1 + SAFETY_MARGIN);
    this.lateCreditMs = rateLimit.perMs * LATE_CREDIT;
    // A hold stays until the next request starts, whatever resets come meanwhile: a chunk beside
    // the export grows when the export has listed and is told the same share again when it has
    // ended, and that second reset let its next request go at the new spacing from its last one
    // (on the dev server with four workers, one account held 51 requests in a second, one over).
    if (this.intervalMs > 0 && interval < this.intervalMs)
      this.keepOnce ??= Math.min(this.intervalMs, GROWTH_HOLD_INTERVALS * interval);
    this.intervalMs = interval;
    this.concurrency = concurrency;
    this.drain();
    for (const wake of [...this.sleepers]) wake();
  }

  /**
   * Runs `fn` in the next free slot. A request that also counts against other pacers (`also`: the
   * named limits of its endpoint) takes one slot free in all of them and spaces each from it: a
   * slot taken in one pacer and then delayed by another would leave less than that pacer's interval
   * before its next request. Once one of `signals` aborts, a request still waiting for its start
   * throws (within RECHECK_MS) instead of waiting its turn: a cancelled activity's queued requests
   * would otherwise end one interval apart, minutes on a slow account, and hold up its worker's
   * shutdown.
   */
  async run<T>(
    fn: () => Promise<T>,
    also: readonly Pacer[] = [],
    signals: ReadonlyArray<AbortSignal | undefined> = [],
  ): Promise<T> {
    const started = this.now();
    await this.acquire();
    try {
      const pacers = [this, ...also];
      // The slot is claimed when it begins, not planned ahead: a pacer that grows meanwhile
      // (reset) wakes a waiting request, which starts sooner. Waiters look again at least every
      // RECHECK_MS; timers may fire a millisecond early.
      for (let slept = false; ; slept = true) {
        for (const signal of signals) signal?.throwIfAborted();
        const at = Math.max(...pacers.map((p) => p.readyAt()));
        const now = this.now();
        if (now >= at) {
          for (const p of pacers) {
            p.lastStart = slept ? Math.max(at, now - p.lateCreditMs) : now;
            p.keepOnce = undefined;
          }
          break;
        }
        await this.sleepUnlessReset(Math.min(at - now, RECHECK_MS), pacers);
      }
      this.onWait?.(this.now() - started);
      return await fn();
    } finally {
      this.release();
    }
  }

  /** Waits `ms`, or less when one of `pacers` is reset meanwhile. */
  private sleepUnlessReset(ms: number, pacers: readonly Pacer[]): Promise<void> {
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        for (const p of pacers) p.sleepers.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      for (const p of pacers) p.sleepers.add(wake);
    });
  }

  /** Holds every new request start until `ms` from now (the ESP's Retry-After). */
  pause(ms: number): void {
    this.pauseUntil(this.now() + ms);
  }

  pauseUntil(at: number): void {
    this.pausedUntil = Math.max(this.pausedUntil, at);
  }

  /**
   * No request starts sooner than one interval from now, as if one had started now; or, when no
   * request may have started for `quietMs` already, one interval from then. With `part` (0 to 1),
   * that part of one interval.
   */
  holdOneInterval(quietMs = 0, part = 1): void {
    const held = this.now() - Math.max(0, quietMs) - (1 - part) * this.intervalMs;
    this.lastStart = Math.max(this.lastStart ?? -Infinity, held);
  }

  /**
   * Grown together with other holders of the account (the chunks beside the export, as it gives
   * its share to them): when it has grown since its last request, and its next request could start
   * now, it starts `part` (0 to 1) of one interval from now instead (the growth's hold dropped; a
   * pacer that did not grow keeps its pace). Holders told distinct parts (k/n for n of them) then
   * send as one holder of their summed rate would, one every interval/n from the growth on; all at
   * once, they would send n requests in the same millisecond into a second that still holds the
   * export's last second of pages (docs/scale.md).
   */
  stagger(part: number): void {
    if (this.keepOnce === undefined || this.readyAt() > this.now()) return;
    this.keepOnce = undefined;
    this.lastStart = this.now() - (1 - part) * this.intervalMs;
  }

  /** How long since the last request started (or since holdOneInterval held as if); undefined: none. */
  quietMs(): number | undefined {
    return this.lastStart === undefined ? undefined : Math.max(0, this.now() - this.lastStart);
  }

  /** When the next request could start: an interval after the last one, and after a pause. */
  readyAt(): number {
    const spaced =
      this.lastStart === undefined ? 0 : this.lastStart + Math.max(this.keepOnce ?? 0, this.intervalMs);
    return Math.max(this.pausedUntil, spaced);
  }

  private async acquire(): Promise<void> {
    if (this.inFlight < this.concurrency) {
      this.inFlight++;
      return;
    }
    await new Promise<void>((resolve) => this.waiting.push(resolve));
  }

  private release(): void {
    this.inFlight--;
    this.drain();
  }

  private drain(): void {
    while (this.inFlight < this.concurrency && this.waiting.length > 0) {
      this.inFlight++;
      this.waiting.shift()!();
    }
  }
}

/** An ESP account's limits: concurrency and rate for every request, plus named extra rates. */
export interface AccountLimits {
  concurrency: number;
  rate: { requests: number; perMs: number };
  /** Endpoints the ESP limits on their own (HubSpot search, Iterable exports). */
  extra?: Record<string, NamedLimit>;
  /** Contacts per listing page and per update request, when the processor lists in pages. */
  sizes?: { page: number; batch: number };
}

/**
 * Fractions of an account's limits: of the rate every request counts against and of the named
 * limits both sides use (`shared`), of the named limits only listing uses, of those only writing
 * uses. 0: this holder sends no such request (asking for it is a bug, and throws).
 */
export interface Share {
  shared: number;
  listing: number;
  writing: number;
}

/** How a processor's requests to one ESP account are paced: what an activity hands it. */
export interface AccountPacing {
  /**
   * Runs one request within the account's limits, and within the named extra limit when given.
   * Once `stop` aborts (another batch of the same write failed), it ends instead of waiting its turn.
   */
  run<T>(fn: () => Promise<T>, limit?: string, stop?: AbortSignal): Promise<T>;
  /** The ESP answered 429: no request starts for `ms` (and, with a lease, none on other workers). */
  pause(ms: number): void;
  /** Aborted once the activity is cancelled: requests in flight and waits end too. */
  readonly signal?: AbortSignal;
}

/**
 * A share of an account's limits: `share` of every rate (one fraction for all, or one per side)
 * and `slots` requests in flight, with one pacer per limit.
 */
export class PacerSet implements AccountPacing {
  private readonly main: Pacer;
  private readonly extra = new Map<string, Pacer>();
  /** Named limits of the other side of the run: this holder has no share of them. */
  private readonly notMine = new Map<string, string>();
  private readonly onPause?: (until: number) => void;
  readonly signal?: AbortSignal;
  /** Requests sent so far. */
  started = 0;

  constructor(
    limits: AccountLimits,
    share: number | Share,
    slots: number,
    options: {
      onWait?: (ms: number) => void;
      onPause?: (until: number) => void;
      /**
       * Once aborted (the activity was cancelled), no request starts: each throws instead, those
       * waiting for their turn too.
       */
      signal?: AbortSignal;
    } = {},
  ) {
    const fractions = fractionsOf(share);
    this.main = new Pacer(scaled(limits.rate, fractions.shared), slots, Date.now, options.onWait);
    // Named limits only space requests: their requests are in flight under the main pacer.
    for (const [name, limit] of Object.entries(limits.extra ?? {})) {
      const fraction = limit.for ? fractions[limit.for] : fractions.shared;
      if (fraction <= 0) {
        this.notMine.set(name, limit.for ?? 'shared');
        continue;
      }
      this.extra.set(name, new Pacer(scaled(limit, fraction), Number.MAX_SAFE_INTEGER));
    }
    this.onPause = options.onPause;
    this.signal = options.signal;
  }

  /**
   * A new share for the requests still to come, larger or smaller: each pacer keeps its slots in
   * flight and spaces its next request from its last one at the new rate; a request waiting for
   * its start looks again (so one pacer, never two, spaces a holder's requests). Named limits this
   * holder had no share of stay so.
   */
  reshare(limits: AccountLimits, share: number | Share, slots: number): void {
    const fractions = fractionsOf(share);
    this.main.reset(scaled(limits.rate, fractions.shared), slots);
    for (const [name, pacer] of this.extra) {
      const limit = limits.extra![name]!;
      const fraction = limit.for ? fractions[limit.for] : fractions.shared;
      if (fraction > 0) pacer.reset(scaled(limit, fraction), Number.MAX_SAFE_INTEGER);
    }
  }

  run<T>(fn: () => Promise<T>, limit?: string, stop?: AbortSignal): Promise<T> {
    const extra = limit === undefined ? undefined : this.extra.get(limit);
    if (limit !== undefined && !extra) {
      const side = this.notMine.get(limit);
      throw new Error(
        side
          ? `the ${limit} limit is for ${side} requests, and this activity sends none of those`
          : `no limit named ${limit} in this ESP's descriptor`,
      );
    }
    const send = () => {
      this.signal?.throwIfAborted();
      this.started++;
      return fn();
    };
    // Checked as it waits (AbortSignal.any per request would cost a signal each, in the hot path).
    return this.main.run(send, extra ? [extra] : [], [this.signal, stop]);
  }

  pause(ms: number): void {
    this.pauseUntil(Date.now() + ms);
    this.onPause?.(Date.now() + ms);
  }

  /** A pause another worker's 429 caused. */
  pauseUntil(at: number): void {
    this.main.pauseUntil(at);
    for (const p of this.extra.values()) p.pauseUntil(at);
  }

  /**
   * This share takes over from holders that may have just sent requests (chunk updates that
   * ended, the export's previous part): its first request under each limit waits one of its
   * intervals, as if it had sent one now. Started at once, it would put its first request in the
   * same window as its predecessor's last ones, one more than the limit allows (the Iterable
   * profile's 429s: a chunk of one write a second starting 150 ms after the chunk before it).
   * With `quietMs`, no request of those holders started in the last `quietMs`: the interval
   * counts from then. With `part`, it waits that part of one interval (a holder that lowered its
   * own pacing before handing the share over: update-chunk.ts, FROM_EXPORT_HOLD).
   */
  takeOver(quietMs = 0, part = 1): void {
    this.main.holdOneInterval(quietMs, part);
    for (const p of this.extra.values()) p.holdOneInterval(quietMs, part);
  }

  /** Grown together with other holders: Pacer.stagger, under every limit. */
  stagger(part: number): void {
    this.main.stagger(part);
    for (const p of this.extra.values()) p.stagger(part);
  }

  /**
   * How long since this holder's last request started (undefined: it sent none and took over
   * nothing): the next holder of its share may count that as waited (takeOver's quietMs).
   */
  quietMs(): number | undefined {
    const quiet = [this.main, ...this.extra.values()].flatMap((p) => p.quietMs() ?? []);
    return quiet.length ? Math.min(...quiet) : undefined;
  }
}

function fractionsOf(share: number | Share): Share {
  return typeof share === 'number' ? { shared: share, listing: share, writing: share } : share;
}

/** A limit scaled to a share, in whole requests per window (wholeRequests). */
function scaled(r: { requests: number; perMs: number }, fraction: number) {
  return { requests: wholeRequests(r.requests * fraction), perMs: r.perMs };
}

/**
 * A share's requests per window, rounded down to whole requests when it has one or more: evenly
 * spaced, a holder of m per window sends at most m in any window, so the holders' m add up to at
 * most the limit however their requests fall. With fractions (2.25 each for four holders of 9),
 * each could send 3 in one window and 12 would arrive. Below one per window a holder sends at most
 * one per window; the run keeps no more holders than the limit has requests (chunksAtOnce).
 */
export function wholeRequests(requests: number): number {
  return requests >= 1 ? Math.floor(requests + 1e-9) : requests;
}

/**
 * Pacing within one process, for callers that bring no share of their own (tests of processors,
 * the CLI's connect): every caller of an account in this process shares one PacerSet with the
 * whole of the account's limits. Runs bring their share (src/activities/account-share.ts).
 */
export class ProcessPacing {
  private readonly sets = new Map<string, PacerSet>();

  constructor(private readonly onWait?: (esp: string, ms: number) => void) {}

  of(account: { esp: string; accountId: string; limits: AccountLimits }): PacerSet {
    const key = `${account.esp}:${account.accountId}`;
    let set = this.sets.get(key);
    if (!set) {
      set = new PacerSet(account.limits, 1, account.limits.concurrency, {
        onWait: (ms) => this.onWait?.(account.esp, ms),
      });
      this.sets.set(key, set);
    }
    return set;
  }
}
