// What an ESP API request meets before its handler: the account's limits (past them, a 429 with
// Retry-After, as a real ESP answers), then the faults its settings inject: latency, 429s, 5xx
// answers and requests never answered.
import type { IncomingMessage } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { HttpError, STREAMED } from './http';
import { drawLatency } from './latency';
import { LimitCrossed, type LimitGates, type RequestKind } from './limits';
import type { SandboxAccount } from './state';

/** Runs `handle` within the account's limits and faults; STREAMED when the request is left unanswered. */
export async function withinLimitsAndFaults(
  gates: LimitGates,
  account: SandboxAccount,
  kind: RequestKind,
  req: IncomingMessage,
  handle: () => unknown,
): Promise<unknown> {
  const { limits, faults } = account.settings;
  let leave: () => void;
  try {
    leave = gates.admit(account.id, [
      ['shared', limits],
      ['listing', kind === 'listing' ? limits.listing : undefined],
      ['writing', kind === 'writing' ? limits.writing : undefined],
    ]);
  } catch (err) {
    if (!(err instanceof LimitCrossed)) throw err;
    throw new HttpError(429, err.code, err.message, {}, { 'retry-after': String(err.retryAfterSeconds) });
  }
  try {
    if (faults.latencyMs > 0) await sleep(drawLatency(faults));
    if (Math.random() < faults.rateLimitRate) {
      throw new HttpError(429, 'rate_limited', 'rate limited (simulated)', {}, { 'retry-after': '1' });
    }
    if (Math.random() < faults.errorRate) {
      const status = Math.random() < 0.5 ? 500 : 503;
      throw new HttpError(status, 'server_error', 'internal error (simulated)');
    }
    if (Math.random() < faults.timeoutRate) {
      // Never answer; the client's timeout ends it.
      await new Promise((resolve) => req.socket.once('close', resolve));
      return STREAMED;
    }
    return await handle();
  } finally {
    leave();
  }
}
