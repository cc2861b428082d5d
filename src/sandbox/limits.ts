// Server-side limits: what a real ESP does when a client sends too much. Each account has one
// limit every API request counts against and, when set, one of its own for listing and for writing.
import type { RequestLimit } from './account-settings';

/** The endpoints an ESP limits on their own; `other` requests count against the shared limit only. */
export type RequestKind = 'listing' | 'writing' | 'other';

/** A limit crossed: answered 429 with this Retry-After (whole seconds, at least 1). */
export class LimitCrossed extends Error {
  constructor(
    readonly code: 'rate_limited' | 'too_many_concurrent_requests',
    message: string,
    readonly retryAfterSeconds: number,
  ) {
    super(message);
  }
}

/** Request starts in the sliding window and requests in flight, per account and limit. */
export class LimitGates {
  private readonly starts = new Map<string, number[]>();
  private readonly inFlight = new Map<string, number>();

  /**
   * Admits one request through every limit given (name -> limit), or throws LimitCrossed without
   * counting it anywhere. Returns the function that ends the request's stay in flight.
   */
  admit(accountId: string, limits: Array<[string, RequestLimit | undefined]>, now = Date.now()): () => void {
    const applied = limits.filter((l): l is [string, RequestLimit] => l[1] !== undefined);
    for (const [name, limit] of applied) this.check(`${accountId}:${name}`, name, limit, now);
    const keys = applied.map(([name]) => `${accountId}:${name}`);
    for (const [i, [, limit]] of applied.entries()) {
      const key = keys[i]!;
      if (limit.requestsPerSecond > 0) this.starts.get(key)!.push(now);
      this.inFlight.set(key, (this.inFlight.get(key) ?? 0) + 1);
    }
    return () => {
      for (const key of keys) this.inFlight.set(key, (this.inFlight.get(key) ?? 1) - 1);
    };
  }

  private check(key: string, name: string, limit: RequestLimit, now: number): void {
    const what = name === 'shared' ? 'requests' : `${name} requests`;
    if (limit.concurrency > 0 && (this.inFlight.get(key) ?? 0) >= limit.concurrency) {
      throw new LimitCrossed(
        'too_many_concurrent_requests',
        `at most ${limit.concurrency} concurrent ${what}`,
        1,
      );
    }
    if (limit.requestsPerSecond <= 0) return;
    const windowMs = (limit.windowSeconds ?? 1) * 1000;
    const capacity = Math.max(1, Math.round(limit.requestsPerSecond * (windowMs / 1000)));
    const window = (this.starts.get(key) ?? []).filter((t) => t > now - windowMs);
    this.starts.set(key, window);
    if (window.length >= capacity) {
      const wait = Math.max(1, Math.ceil((window[0]! + windowMs - now) / 1000));
      throw new LimitCrossed('rate_limited', `at most ${capacity} ${what} per ${windowMs / 1000} s`, wait);
    }
  }
}
