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
  /**
   * When each request came (ms after firstAt) and of what kind, the first TIMELINE_MAX of them:
   * where a client's pacing leaves the account idle (/_sandbox/stats/<account>/timeline; /stats
   * leaves it out).
   */
  timeline: { at: number[]; kind: RequestKind[] };
}

/** Requests an account's timeline keeps. */
export const TIMELINE_MAX = 20_000;

/** The stats as /_sandbox/stats shows them: without the timelines. */
export function statsSummary(
  stats: Map<string, SandboxStats>,
): Record<string, Omit<SandboxStats, 'timeline'>> {
  return Object.fromEntries([...stats].map(([id, { timeline: _, ...counts }]) => [id, counts]));
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
        timeline: { at: [], kind: [] },
      })
      .get(accountId)!;
  s.requests++;
  s.lastAt = now;
  if (s.timeline.at.length < TIMELINE_MAX) {
    s.timeline.at.push(now - s.firstAt);
    s.timeline.kind.push(kind);
  }
  s.byStatus[status] = (s.byStatus[status] ?? 0) + 1;
  if (status === 429) return;
  s.needed[kind]++;
  if (kind === 'writing') s.firstWriteAt ??= now;
}
