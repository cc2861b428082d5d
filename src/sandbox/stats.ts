// What the Sandbox counts of the ESP API requests it answers, per account (/_sandbox/stats):
// statuses, the time span, and what the work needed, so tests and benchmarks measure a client.
import type { RequestKind } from './limits';

export interface SandboxStats {
  requests: number;
  byStatus: Record<string, number>;
  /** Epoch ms of the first and last API request counted, to measure achieved request rates. */
  firstAt: number;
  lastAt: number;
  /** Requests per kind not refused with 429: what the work needed. */
  needed: Record<RequestKind, number>;
  /** Epoch ms of the first batch update not refused with 429. */
  firstWriteAt?: number;
}

export function countRequest(
  stats: Map<string, SandboxStats>,
  accountId: string,
  status: number,
  kind: RequestKind,
): void {
  const now = Date.now();
  const s =
    stats.get(accountId) ??
    stats
      .set(accountId, {
        requests: 0,
        byStatus: {},
        firstAt: now,
        lastAt: now,
        needed: { listing: 0, writing: 0, other: 0 },
      })
      .get(accountId)!;
  s.requests++;
  s.lastAt = now;
  s.byStatus[status] = (s.byStatus[status] ?? 0) + 1;
  if (status === 429) return;
  s.needed[kind]++;
  if (kind === 'writing') s.firstWriteAt ??= now;
}
