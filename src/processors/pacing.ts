import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Requests are spaced a little wider than the published limit: the ESP counts arrival times, and
 * network jitter can bunch requests that left evenly spaced.
 */
const SAFETY_MARGIN = 0.05;

/**
 * Client-side pacing for one ESP account: at most `concurrency` requests in flight, and request
 * starts spaced evenly at the descriptor's rate (no bursts, so a sliding-window limit on the ESP side
 * is never crossed). After a 429 every caller waits out the ESP's delay (`pause`).
 */
export class Pacer {
  private inFlight = 0;
  private readonly waiting: Array<() => void> = [];
  private nextStart = 0;
  private pausedUntil = 0;
  private readonly intervalMs: number;

  constructor(
    rateLimit: { requests: number; perMs: number },
    private readonly concurrency: number,
    private readonly now: () => number = Date.now,
    /** Told how long each request waited before being sent (metrics). */
    private readonly onWait?: (ms: number) => void,
  ) {
    if (rateLimit.requests <= 0 || rateLimit.perMs <= 0 || concurrency <= 0) {
      throw new RangeError('rate limit and concurrency must be positive');
    }
    this.intervalMs = (rateLimit.perMs / rateLimit.requests) * (1 + SAFETY_MARGIN);
  }

  async run<T>(fn: () => Promise<T>): Promise<T> {
    const started = this.now();
    await this.acquire();
    try {
      const at = Math.max(this.now(), this.nextStart, this.pausedUntil);
      this.nextStart = at + this.intervalMs;
      // Timers may fire a millisecond early: wait until the slot has really begun.
      while (this.now() < at) await sleep(at - this.now());
      this.onWait?.(this.now() - started);
      return await fn();
    } finally {
      this.release();
    }
  }

  /** Holds every new request start until `ms` from now (the ESP's Retry-After). */
  pause(ms: number): void {
    this.pausedUntil = Math.max(this.pausedUntil, this.now() + ms);
  }

  private async acquire(): Promise<void> {
    if (this.inFlight < this.concurrency) {
      this.inFlight++;
      return;
    }
    await new Promise<void>((resolve) => this.waiting.push(resolve));
  }

  private release(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.inFlight--;
  }
}

/** One pacer per ESP account per process, shared by every activity that calls that account. */
export class PacerRegistry {
  private readonly pacers = new Map<string, Pacer>();

  get(
    key: string,
    rateLimit: { requests: number; perMs: number },
    concurrency: number,
    onWait?: (ms: number) => void,
  ): Pacer {
    let pacer = this.pacers.get(key);
    if (!pacer) this.pacers.set(key, (pacer = new Pacer(rateLimit, concurrency, Date.now, onWait)));
    return pacer;
  }
}
