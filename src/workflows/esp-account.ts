import {
  allHandlersFinished,
  condition,
  continueAsNew,
  defineQuery,
  defineSignal,
  defineUpdate,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import type { AccountLimits } from '../processors/pacing';

export interface EspAccountInput {
  esp: string;
  accountId: string;
  limits: AccountLimits;
  /** Carried across continue-as-new. */
  state?: AccountState;
}

/**
 * The account's limits are cut into `concurrency` slots; a slot is one request in flight and
 * 1/concurrency of every rate. A lease holds some slots for one activity's work (a chunk, a stretch
 * of an export), never for one request. Each slot remembers when its next request may start
 * (per limit), so a slot handed from one lease to the next keeps its spacing.
 */
interface AccountState {
  slots: Array<{ lease?: string; readyAt: Record<string, number> }>;
  leases: Record<string, { slots: number[]; expiresAt: number }>;
  waiting: Array<{ lease: string; want: number; expiresAt: number }>;
  pausedUntil: number;
}

export interface LeaseRequest {
  lease: string;
  /** Slots wanted; fewer are granted when fewer are free (never none). */
  want: number;
  /** The lease (or the wait for it) ends this long after its last renewal. */
  ttlMs: number;
}

export type LeaseAnswer =
  | {
      state: 'granted';
      slots: number;
      of: number;
      /** Per limit (`default` and each extra): the lease's first request may not start earlier. */
      startAt: Record<string, number>;
      pausedUntil: number;
    }
  | { state: 'waiting'; ahead: number }
  | { state: 'unknown' };

export const renewLeaseSignal = defineSignal<[{ lease: string; ttlMs: number }]>('renewLease');
/** `readyAt`: per limit, when the holder's next request would have started (handed on to the slots). */
export const releaseLeaseSignal =
  defineSignal<[{ lease: string; readyAt?: Record<string, number> }]>('releaseLease');
/** An ESP answered 429: no lease's requests start before `until` (epoch ms). */
export const pauseAccountSignal = defineSignal<[{ until: number }]>('pauseAccount');
export const leaseQuery = defineQuery<LeaseAnswer, [string]>('lease');
/**
 * Asks for a lease (or asks again with the same id): answers `granted` at once when slots are
 * free, else waits up to a few seconds for them and answers `waiting` (the caller asks again).
 */
export const acquireLeaseUpdate = defineUpdate<LeaseAnswer, [LeaseRequest]>('acquireLease');
export const accountQuery = defineQuery<{
  slots: number;
  leased: number;
  waiting: number;
  pausedUntil: number;
}>('account');

/** Continue-as-new well before histories get long: every request, renewal and release is an event. */
const MAX_HISTORY_EVENTS = 2_000;
/** With nothing leased or waiting this long, the coordinator ends (the next request starts it again). */
const IDLE_MS = 15_000;
/** A request that finds no free slot waits this long for one before it is answered `waiting`. */
const HOLD_MS = 3_000;

/**
 * The coordinator of one ESP account (`esp-account/<esp>/<accountId>`): every worker's activities
 * that call the account lease slots from it, so the account sees at most its documented rate and
 * concurrency whatever the number of workers and of configurations on it. Waiting leases are served
 * first come, first served; leases whose holder stopped renewing (a crashed worker) expire.
 */
export async function espAccountWorkflow(input: EspAccountInput): Promise<void> {
  const slotCount = Math.max(1, Math.floor(input.limits.concurrency));
  const s: AccountState = input.state ?? {
    slots: Array.from({ length: slotCount }, () => ({ readyAt: {} })),
    leases: {},
    waiting: [],
    pausedUntil: 0,
  };
  let changed = true;

  let draining = false;
  setHandler(acquireLeaseUpdate, async (r): Promise<LeaseAnswer> => {
    changed = true;
    const expiresAt = Date.now() + r.ttlMs;
    if (s.leases[r.lease]) s.leases[r.lease]!.expiresAt = expiresAt;
    else {
      const waiting = s.waiting.find((w) => w.lease === r.lease);
      if (waiting) waiting.expiresAt = expiresAt;
      else
        s.waiting.push({
          lease: r.lease,
          want: Math.max(1, Math.min(slotCount, Math.floor(r.want))),
          expiresAt,
        });
      grant();
      // Hold the answer a moment: a slot freed meanwhile is granted without another round trip.
      await condition(
        () => !!s.leases[r.lease] || !s.waiting.some((w) => w.lease === r.lease) || draining,
        HOLD_MS,
      );
    }
    return answer(r.lease);
  });
  setHandler(renewLeaseSignal, ({ lease, ttlMs }) => {
    const expiresAt = Date.now() + ttlMs;
    const held = s.leases[lease];
    if (held) held.expiresAt = expiresAt;
    for (const w of s.waiting) if (w.lease === lease) w.expiresAt = expiresAt;
  });
  setHandler(releaseLeaseSignal, ({ lease, readyAt }) => {
    changed = true;
    free(lease, readyAt);
    s.waiting = s.waiting.filter((w) => w.lease !== lease);
  });
  setHandler(pauseAccountSignal, ({ until }) => {
    s.pausedUntil = Math.max(s.pausedUntil, until);
  });
  setHandler(leaseQuery, (lease) => answer(lease));
  setHandler(accountQuery, () => ({
    slots: slotCount,
    leased: s.slots.filter((x) => x.lease).length,
    waiting: s.waiting.length,
    pausedUntil: s.pausedUntil,
  }));

  function answer(lease: string): LeaseAnswer {
    const held = s.leases[lease];
    if (held) {
      const startAt: Record<string, number> = {};
      for (const i of held.slots) {
        for (const [limit, at] of Object.entries(s.slots[i]!.readyAt)) {
          startAt[limit] = Math.max(startAt[limit] ?? 0, at);
        }
      }
      return {
        state: 'granted',
        slots: held.slots.length,
        of: slotCount,
        startAt,
        pausedUntil: s.pausedUntil,
      };
    }
    const ahead = s.waiting.findIndex((w) => w.lease === lease);
    return ahead >= 0 ? { state: 'waiting', ahead } : { state: 'unknown' };
  }

  function free(lease: string, readyAt?: Record<string, number>): void {
    const held = s.leases[lease];
    if (!held) return;
    for (const i of held.slots) {
      const slot = s.slots[i]!;
      slot.lease = undefined;
      for (const [limit, at] of Object.entries(readyAt ?? {}))
        slot.readyAt[limit] = Math.max(slot.readyAt[limit] ?? 0, at);
    }
    delete s.leases[lease];
  }

  function expire(now: number): void {
    for (const [lease, held] of Object.entries(s.leases)) {
      // A holder that stopped renewing sent nothing after its expiry: its slots are ready now.
      if (held.expiresAt <= now) free(lease, { default: now });
    }
    s.waiting = s.waiting.filter((w) => w.expiresAt > now);
  }

  function grant(): void {
    while (s.waiting.length > 0) {
      const free = s.slots.flatMap((slot, i) => (slot.lease ? [] : [i]));
      if (free.length === 0) return;
      const next = s.waiting.shift()!;
      const taken = free.slice(0, next.want);
      for (const i of taken) s.slots[i]!.lease = next.lease;
      s.leases[next.lease] = { slots: taken, expiresAt: next.expiresAt };
    }
  }

  const nextExpiry = () =>
    Math.min(...Object.values(s.leases).map((l) => l.expiresAt), ...s.waiting.map((w) => w.expiresAt));
  const idle = () => Object.keys(s.leases).length === 0 && s.waiting.length === 0;

  for (;;) {
    expire(Date.now());
    grant();
    changed = false;
    if (workflowInfo().continueAsNewSuggested || workflowInfo().historyLength > MAX_HISTORY_EVENTS) {
      // Requests being held are answered `waiting` (they ask the next run again).
      draining = true;
      await condition(allHandlersFinished);
      await continueAsNew<typeof espAccountWorkflow>({ ...input, state: s });
    }
    if (idle()) {
      // Nothing to coordinate: end after a quiet minute (a new request starts a new run).
      if (!(await condition(() => changed, IDLE_MS))) {
        await condition(allHandlersFinished);
        if (idle()) return;
      }
      continue;
    }
    await condition(() => changed, Math.max(10, nextExpiry() - Date.now()));
  }
}
