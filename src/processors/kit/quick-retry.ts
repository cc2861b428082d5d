// A 5xx, timeout or reset is retried twice in the process, quickly: every ESP call espresso makes
// is idempotent (reads, and writes of the same values). What still fails goes back to the
// activity's retry policy. 429s are not retried here: the activity retries after the ESP's
// Retry-After.
import { setTimeout as sleep } from 'node:timers/promises';
import { TransientError } from '../errors';

/** In-process retries of transient ESP errors before the activity's own retry policy takes over. */
const QUICK_RETRIES = 2;

export async function retryingTransient<T>(send: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await send();
    } catch (err) {
      if (!(err instanceof TransientError) || attempt > QUICK_RETRIES) throw err;
      await sleep(200 * attempt);
    }
  }
}
