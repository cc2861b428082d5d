// ESPs that work through asynchronous jobs (SendGrid's exports and upserts, Iterable's exports)
// answer "not yet" for a while: the job is asked again with a delay that doubles each time.
import { setTimeout as sleep } from 'node:timers/promises';

/** The longest wait between two polls of one job. */
const MAX_POLL_DELAY_MS = 30_000;

/** How an ESP with asynchronous jobs polls them (defaults in the ESP's file). */
export interface JobPollOptions {
  /** First delay between polls of a job; doubles up to 30 s. */
  jobPollMs?: number;
}

export interface PollOptions {
  /** The first delay between polls; it doubles up to 30 s. */
  firstDelayMs: number;
  /** How long to go on polling. */
  waitMs: number;
  /** Wait one delay before the first poll (a job just started is never done yet). */
  delayFirst?: boolean;
  /** The activity's cancellation: a wait between polls ends at once. */
  signal?: AbortSignal;
}

/**
 * Calls `poll` until it answers something other than undefined, and returns that answer; returns
 * undefined when the next wait would end past `waitMs` (the caller says what a pending job means).
 */
export async function pollJob<T>(
  poll: () => Promise<T | undefined>,
  { firstDelayMs, waitMs, delayFirst = false, signal }: PollOptions,
): Promise<T | undefined> {
  const deadline = Date.now() + waitMs;
  if (delayFirst) await sleep(firstDelayMs, undefined, { signal });
  for (let delay = delayFirst ? nextDelay(firstDelayMs) : firstDelayMs; ; delay = nextDelay(delay)) {
    const answer = await poll();
    if (answer !== undefined) return answer;
    if (Date.now() + delay > deadline) return undefined;
    await sleep(delay, undefined, { signal });
  }
}

function nextDelay(delay: number): number {
  return Math.min(delay * 2, MAX_POLL_DELAY_MS);
}
