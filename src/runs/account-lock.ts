// One run per ESP account at a time. The lock is a document in the blob store, taken, renewed and
// given back with conditional writes, so every worker sees it. The run holding it hands each of its
// activities a fixed share of the account's limits, and no other run writes the configuration
// meanwhile (one writer per configuration). As its last chunks end, it may lend what they held to
// the run waiting next (its guest), which maintains and lists on that and holds the lock once the
// holder gives it back.
import { createHash } from 'node:crypto';
import type { BlobStore } from '../storage';
import { changeJsonDocument, readJsonDocument } from '../storage/json-document';

/** Who holds a lock: a configuration run (its workflow id and first run id: stable across continue-as-new). */
export interface LockOwner {
  configurationId: string;
  workflowId: string;
  runId: string;
  /** A dry run calls the ESP too (it reads), but writes nothing: runs of its configuration wait for it. */
  dryRun: boolean;
  /** The run tells the runs waiting for the account when it gives it back (they ask it to). */
  tellsWaiters?: boolean;
}

/** Who holds an account's lock, as its document says. */
export interface LockHolder {
  owner: LockOwner;
  /** Not renewed in LOCK_TTL_MS: no worker has run its activities since, or its run has ended. */
  expired: boolean;
}

/**
 * What the holder lends the run waiting next while its last chunks end: `fraction` of every limit
 * and `slots` requests in flight, which its own chunks no longer use. The guest takes it with its
 * next ask (acquire names it `owner` then), and the lock is its own when the holder gives it back.
 */
export interface LockGuest {
  workflowId: string;
  fraction: number;
  slots: number;
  owner?: LockOwner;
  /** The holder's last chunks: each adds its share as its last request is answered (lendEnded). */
  tail?: number[];
  /** The chunks of the tail whose shares `fraction` holds already. */
  from?: number[];
  /** Epoch ms: the latest start of a request of a chunk whose share is lent (takeOver's quietMs). */
  quietSince?: number;
}

interface LockDocument {
  owner: LockOwner;
  guest?: LockGuest;
  /** Epoch ms: a lock not renewed by then is free to take once its run has ended (acquire). */
  expiresAt: number;
  released?: boolean;
  /** Epoch ms: an ESP answered 429; no request of the run starts before then, on any worker. */
  pausedUntil?: number;
}

/** A run renews its lock long before this passes; a run that stopped without giving it back frees it after this. */
export const LOCK_TTL_MS = 10 * 60_000;
/**
 * An expired lock whose run may still be running is taken this long after it expired. A run that
 * still runs and has not renewed its lock for that long calls no ESP (a workflow failing its tasks
 * after a deploy, say): renewing it, an activity of that run would find it lost before its first
 * request. One whose run has ended is taken at once (`holderEnded`).
 */
export const STALE_AFTER_MS = 60 * 60_000;

/**
 * A lock renewed less than this ago (by any of its run's activities, or taken) is not written
 * again: renewing it is a read, which still finds a lock lost. Well under LOCK_TTL_MS, so a run
 * whose activities renew every minute always holds more than LOCK_TTL_MS minus two of them.
 */
const RENEWED_RECENTLY_MS = 60_000;

/** What a guest of the account's holder may use of the account (LockGuest). */
export type GuestShare = Pick<LockGuest, 'fraction' | 'slots' | 'quietSince'>;

export class LockLostError extends Error {
  override name = 'LockLostError';
}

export function accountLockKey(esp: string, espAccountId: string): string {
  const account = createHash('sha256').update(espAccountId).digest('hex').slice(0, 32);
  return `locks/accounts/${esp.replace(/[^a-z0-9_-]/gi, '_')}/${account}.json`;
}

/** An answer to acquire: the lock is the run's, or who holds it (and what it lends the run, its guest). */
export type Acquired =
  { held: true } | { held: false; holder: LockOwner; expired?: true; guest?: GuestShare };

/** Until when the run may call the account, until when a 429 paused it, and what it may use as a guest. */
export interface Renewed {
  validUntil: number;
  pausedUntil: number;
  guest?: GuestShare;
}

/** Where a guest's run stands: still lent `share`, holding the lock, or neither (`why`). */
export type Standing = { pausedUntil: number } & (
  { role: 'guest'; share: GuestShare } | { role: 'holder' } | { role: 'lost'; why: string }
);

const same = (a: Pick<LockOwner, 'workflowId' | 'runId'>, b: Pick<LockOwner, 'workflowId' | 'runId'>) =>
  a.workflowId === b.workflowId && a.runId === b.runId;

/** The lock's guest, when it is `owner`'s run (taken by its first ask). */
function guestOf(doc: LockDocument, owner: LockOwner): LockGuest | undefined {
  const guest = doc.guest;
  return guest?.owner && same(guest.owner, owner) && !same(doc.owner, owner) ? guest : undefined;
}

function shareOf(guest: LockGuest): GuestShare {
  const { fraction, slots, quietSince } = guest;
  return { fraction, slots, ...(quietSince ? { quietSince } : {}) };
}

export class AccountLocks {
  constructor(
    private readonly blobs: BlobStore,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Takes the lock for `owner`, or answers who holds it. Taking it again (a retry) is fine. An
   * expired lock is taken only once its run has ended (`holderEnded` names it: the run asking saw
   * it end), or STALE_AFTER_MS after it expired; until then the answer says it `expired`. Its run
   * may be running still: after every worker was down for longer than LOCK_TTL_MS, its activities
   * renew it as they start again, and a run that took it would have failed them (LockLostError).
   * The run the holder lends to (`lend`) is told what it may use (`guest`), and named its guest.
   */
  async acquire(
    key: string,
    owner: LockOwner,
    {
      holderEnded,
      expiredIsFree = false,
      mayBeGuest = false,
    }: {
      holderEnded?: Pick<LockOwner, 'workflowId' | 'runId'>;
      /** Runs of earlier versions, which never ask a holder: an expired lock is theirs, as it was. */
      expiredIsFree?: boolean;
      /** The run may be the holder's guest (runs of earlier versions never are). */
      mayBeGuest?: boolean;
    } = {},
  ): Promise<Acquired> {
    return this.change<Acquired>(key, (doc) => {
      if (doc && !doc.released && !same(doc.owner, owner)) {
        const age = this.age(doc);
        const expired = age !== 'held';
        const free =
          expired &&
          (expiredIsFree || (holderEnded !== undefined && same(doc.owner, holderEnded)) || age === 'stale');
        if (!free) {
          const answer = {
            held: false as const,
            holder: doc.owner,
            ...(expired ? { expired: true as const } : {}),
          };
          const guest = doc.guest;
          if (!mayBeGuest || guest?.workflowId !== owner.workflowId) return { answer };
          const share = shareOf(guest);
          // The guest's run is named once, by its first ask: the lock is its own at the release.
          return guest.owner && same(guest.owner, owner)
            ? { answer: { ...answer, guest: share } }
            : { write: { ...doc, guest: { ...guest, owner } }, answer: { ...answer, guest: share } };
        }
      }
      // The ESP's pause is the account's, not the run's: the next holder waits it out too.
      const paused = doc?.pausedUntil !== undefined && doc.pausedUntil > this.now();
      return {
        write: {
          owner,
          expiresAt: this.now() + LOCK_TTL_MS,
          ...(paused ? { pausedUntil: doc.pausedUntil } : {}),
        },
        answer: { held: true as const },
      };
    });
  }

  /**
   * Renews the lock of `owner` (unless it was renewed in the last minute) and answers until when
   * the run may call the account (and whether a 429 paused it). Throws LockLostError when another
   * run took it (this run's lock had expired) or it was given back.
   */
  async renew(key: string, owner: LockOwner): Promise<Renewed> {
    return this.change<Renewed>(key, (doc) => {
      // A guest renews nothing: the holder does, until the lock is the guest's.
      const guest = doc && !doc.released && guestOf(doc, owner);
      if (guest) {
        const share = shareOf(guest);
        return { answer: { validUntil: doc.expiresAt, pausedUntil: doc.pausedUntil ?? 0, guest: share } };
      }
      if (!doc || doc.released || !same(doc.owner, owner)) {
        throw new LockLostError(
          doc && !doc.released
            ? `another run (${doc.owner.workflowId}) took this ESP account after this run's lock expired`
            : "this run's lock on the ESP account was given back",
        );
      }
      const expiresAt = this.now() + LOCK_TTL_MS;
      const pausedUntil = doc.pausedUntil ?? 0;
      if (doc.expiresAt >= expiresAt - RENEWED_RECENTLY_MS) {
        return { answer: { validUntil: doc.expiresAt, pausedUntil } };
      }
      return { write: { ...doc, expiresAt }, answer: { validUntil: expiresAt, pausedUntil } };
    });
  }

  /**
   * An ESP answered 429: the run's requests on every worker hold off until `until`. The lock is
   * held through the pause and LOCK_TTL_MS after it: a run waiting out a long Retry-After (up to 15
   * minutes: HubSpot's daily limit) runs no activity meanwhile, so nothing renews it, and it must
   * not lose the account (nor another run send into the ESP's pause).
   */
  async pause(key: string, owner: LockOwner, until: number): Promise<void> {
    await this.change(key, (doc) =>
      doc &&
      (same(doc.owner, owner) || guestOf(doc, owner)) &&
      !doc.released &&
      (doc.pausedUntil ?? 0) < until
        ? {
            write: { ...doc, pausedUntil: until, expiresAt: Math.max(doc.expiresAt, until + LOCK_TTL_MS) },
            answer: undefined,
          }
        : { answer: undefined },
    );
  }

  /**
   * Gives the lock back (when `owner` still holds it): to its guest, when one has taken what the
   * holder lent it (the guest holds it from then on, with the holder's pause), else to any run.
   * A guest that gives it back before that leaves the holder's lock as it was, without a guest.
   */
  async release(key: string, owner: LockOwner): Promise<void> {
    await this.change(key, (doc) => {
      if (!doc || doc.released) return { answer: undefined };
      if (guestOf(doc, owner)) {
        const { guest: _, ...withoutGuest } = doc;
        return { write: withoutGuest, answer: undefined };
      }
      if (!same(doc.owner, owner)) return { answer: undefined };
      const next = doc.guest?.owner;
      if (next) {
        const { guest: _, ...rest } = doc;
        return { write: { ...rest, owner: next, expiresAt: this.now() + LOCK_TTL_MS }, answer: undefined };
      }
      return { write: { ...doc, released: true, expiresAt: this.now() }, answer: undefined };
    });
  }

  /**
   * The holder `owner` lends the run `workflowId` (the first to wait for the account that may be
   * a guest) what its chunks do not use (`share`, which only grows), and names its last chunks
   * (`tail`, once) as they are in flight: each adds its own share as it ends (lendEnded). It may
   * lend nothing at first, so that the run is ready when it does. Answers whether that run is the
   * account's guest (not when the lock is not the holder's, or another run is its guest already).
   */
  async lend(
    key: string,
    owner: LockOwner,
    workflowId: string,
    share: GuestShare,
    tail?: number[],
  ): Promise<boolean> {
    return this.change(key, (doc) => {
      if (!doc || doc.released || !same(doc.owner, owner)) return { answer: false };
      const guest = doc.guest;
      if (guest && guest.workflowId !== workflowId) return { answer: false };
      const fraction = Math.max(share.fraction, guest?.fraction ?? 0);
      const slots = Math.max(share.slots, guest?.slots ?? 0);
      const quietSince = Math.max(share.quietSince ?? 0, guest?.quietSince ?? 0);
      const lent: LockGuest = {
        ...guest,
        workflowId,
        fraction,
        slots,
        ...(guest?.tail || tail ? { tail: guest?.tail ?? tail } : {}),
        ...(quietSince ? { quietSince } : {}),
      };
      if (JSON.stringify(lent) === JSON.stringify(guest)) return { answer: true };
      return { write: { ...doc, guest: lent }, answer: true };
    });
  }

  /**
   * A chunk of the holder's tail has had its last request answered: its share (`share`) goes to
   * the guest at once, without waiting for the holder's run to learn that it ended. Once per
   * chunk (a retry adds nothing); nothing when the holder lends nothing, or not this chunk's.
   */
  async lendEnded(key: string, owner: LockOwner, chunk: number, share: GuestShare): Promise<void> {
    await this.change(key, (doc) => {
      const guest = doc?.guest;
      if (!doc || doc.released || !same(doc.owner, owner) || !guest?.tail?.includes(chunk))
        return { answer: undefined };
      if (guest.from?.includes(chunk)) return { answer: undefined };
      const quietSince = Math.max(share.quietSince ?? 0, guest.quietSince ?? 0);
      const lent: LockGuest = {
        ...guest,
        fraction: Math.min(1, guest.fraction + share.fraction),
        slots: guest.slots + share.slots,
        from: [...(guest.from ?? []), chunk],
        ...(quietSince ? { quietSince } : {}),
      };
      return { write: { ...doc, guest: lent }, answer: undefined };
    });
  }

  /** A read, for a guest's activities: what the holder lends the run now, or that the lock is its own. */
  async standing(key: string, owner: LockOwner): Promise<Standing> {
    const doc = (await this.read(key))?.doc;
    const pausedUntil = doc?.pausedUntil ?? 0;
    const guest = doc && !doc.released ? guestOf(doc, owner) : undefined;
    if (guest) return { role: 'guest', share: shareOf(guest), pausedUntil };
    if (doc && !doc.released && same(doc.owner, owner)) return { role: 'holder', pausedUntil };
    const why = doc && !doc.released ? `another run (${doc.owner.workflowId}) took` : 'the holder gave back';
    return { role: 'lost', why: `${why} the ESP account this run was lent`, pausedUntil: 0 };
  }

  /** Until when a 429 paused the account for `owner`'s run, or its guest (0: not paused). */
  async pausedUntil(key: string, owner: LockOwner): Promise<number> {
    const current = await this.read(key);
    return current && (same(current.doc.owner, owner) || guestOf(current.doc, owner))
      ? (current.doc.pausedUntil ?? 0)
      : 0;
  }

  /**
   * The run holding the lock, if any: one that has not given it back, and whose lock has not
   * expired, or expired less than STALE_AFTER_MS ago (`expired`): no other run takes it then
   * unless its run has ended (acquire), which only Temporal can say.
   */
  async holder(key: string): Promise<LockHolder | undefined> {
    const doc = await this.read(key);
    if (!doc || doc.doc.released) return undefined;
    const age = this.age(doc.doc);
    return age === 'stale' ? undefined : { owner: doc.doc.owner, expired: age === 'expired' };
  }

  /** A lock not given back: renewed in time, expired, or expired STALE_AFTER_MS ago or more. */
  private age(doc: LockDocument): 'held' | 'expired' | 'stale' {
    const past = this.now() - doc.expiresAt;
    return past < 0 ? 'held' : past < STALE_AFTER_MS ? 'expired' : 'stale';
  }

  private async read(key: string) {
    return readJsonDocument<LockDocument>(this.blobs, key);
  }

  private change<T>(
    key: string,
    decide: (doc: LockDocument | undefined) => { write?: LockDocument; answer: T },
  ): Promise<T> {
    return changeJsonDocument(this.blobs, key, decide);
  }
}
