// One run per ESP account at a time. The lock is a document in the blob store, taken, renewed and
// given back with conditional writes, so every worker sees it. The run holding it is the only one
// that calls the account, so it can hand each of its activities a fixed share of the account's
// limits, and no other run writes the configuration meanwhile (one writer per configuration).
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

interface LockDocument {
  owner: LockOwner;
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

export class LockLostError extends Error {
  override name = 'LockLostError';
}

export function accountLockKey(esp: string, espAccountId: string): string {
  const account = createHash('sha256').update(espAccountId).digest('hex').slice(0, 32);
  return `locks/accounts/${esp.replace(/[^a-z0-9_-]/gi, '_')}/${account}.json`;
}

const same = (a: Pick<LockOwner, 'workflowId' | 'runId'>, b: Pick<LockOwner, 'workflowId' | 'runId'>) =>
  a.workflowId === b.workflowId && a.runId === b.runId;

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
   */
  async acquire(
    key: string,
    owner: LockOwner,
    {
      holderEnded,
      expiredIsFree = false,
    }: {
      holderEnded?: Pick<LockOwner, 'workflowId' | 'runId'>;
      /** Runs of earlier versions, which never ask a holder: an expired lock is theirs, as it was. */
      expiredIsFree?: boolean;
    } = {},
  ): Promise<{ held: true } | { held: false; holder: LockOwner; expired?: true }> {
    return this.change<{ held: true } | { held: false; holder: LockOwner; expired?: true }>(key, (doc) => {
      if (doc && !doc.released && !same(doc.owner, owner)) {
        const age = this.age(doc);
        const expired = age !== 'held';
        const free =
          expired &&
          (expiredIsFree || (holderEnded !== undefined && same(doc.owner, holderEnded)) || age === 'stale');
        if (!free) {
          return {
            answer: {
              held: false as const,
              holder: doc.owner,
              ...(expired ? { expired: true as const } : {}),
            },
          };
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
  async renew(key: string, owner: LockOwner): Promise<{ validUntil: number; pausedUntil: number }> {
    return this.change(key, (doc) => {
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
      doc && same(doc.owner, owner) && !doc.released && (doc.pausedUntil ?? 0) < until
        ? {
            write: { ...doc, pausedUntil: until, expiresAt: Math.max(doc.expiresAt, until + LOCK_TTL_MS) },
            answer: undefined,
          }
        : { answer: undefined },
    );
  }

  /** Gives the lock back (when `owner` still holds it). */
  async release(key: string, owner: LockOwner): Promise<void> {
    await this.change(key, (doc) =>
      doc && same(doc.owner, owner) && !doc.released
        ? { write: { ...doc, released: true, expiresAt: this.now() }, answer: undefined }
        : { answer: undefined },
    );
  }

  /** Until when a 429 paused the account for `owner`'s run (0: not paused). */
  async pausedUntil(key: string, owner: LockOwner): Promise<number> {
    const current = await this.read(key);
    return current && same(current.doc.owner, owner) ? (current.doc.pausedUntil ?? 0) : 0;
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
