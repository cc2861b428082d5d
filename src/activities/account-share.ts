import { Context } from '@temporalio/activity';
import type { ActivityDeps } from '.';
import type { BaseProcessor } from '../processors/base-processor';
import { PacerSet } from '../processors/pacing';
import type { ProcessorTarget } from '../processors/types';
import { accountLockKey, AccountLocks, LOCK_TTL_MS, type LockOwner } from '../runs/account-lock';

/** A run renews its account lock this often while one of its activities calls the ESP. */
const RENEW_EVERY_MS = 60_000;
/** …and looks this often whether a 429 on another worker paused the account. */
const PAUSE_CHECK_MS = 2_000;

/**
 * What one activity of a run may use of its ESP account: a fixed share of the account's limits
 * (`fraction` of every rate, `slots` requests in flight). Fixed shares are enough because the run
 * holds the account's lock: no other run calls the account, and the run's own activities in flight
 * at once take shares that add up to at most the whole. `check()` before each stretch of requests
 * keeps the lock (and stops the work if it was lost) and hears of 429s on other workers.
 */
export class AccountShare {
  readonly pacing: PacerSet;
  private readonly locks: AccountLocks;
  private readonly key: string;
  private renewedAt = 0;
  private pauseCheckedAt = 0;

  constructor(
    deps: ActivityDeps,
    processor: BaseProcessor,
    target: ProcessorTarget,
    share: { fraction: number; slots: number },
    /** The run's lock; runs of earlier versions hold none. */
    private readonly owner?: LockOwner,
  ) {
    const esp = processor.descriptor.id;
    this.locks = new AccountLocks(deps.stores.blobs);
    this.key = accountLockKey(esp, target.espAccountId);
    this.pacing = new PacerSet(processor.limits(), share.fraction, share.slots, {
      onWait: (ms) => deps.metrics?.rateLimitWait.inc({ esp }, ms / 1000),
      onPause: (until) => {
        if (this.owner) void this.locks.pause(this.key, this.owner, until).catch(() => undefined);
      },
      // A cancelled activity (the run was cancelled, or passed its deadline) sends nothing more.
      signal: Context.current().cancellationSignal,
    });
  }

  /** The whole account, for one activity at a time (maintenance, export). */
  static whole(deps: ActivityDeps, processor: BaseProcessor, target: ProcessorTarget, owner?: LockOwner) {
    return new AccountShare(
      deps,
      processor,
      target,
      { fraction: 1, slots: processor.descriptor.concurrency },
      owner,
    );
  }

  /** One of `window` chunk updates in flight at once. */
  static ofWindow(
    deps: ActivityDeps,
    processor: BaseProcessor,
    target: ProcessorTarget,
    window: number,
    owner?: LockOwner,
  ) {
    const concurrency = processor.descriptor.concurrency;
    const w = Math.max(1, Math.min(window, concurrency));
    return new AccountShare(
      deps,
      processor,
      target,
      { fraction: 1 / w, slots: Math.max(1, Math.floor(concurrency / w)) },
      owner,
    );
  }

  /** Throws LockLostError when another run took the account (this run's lock had expired). */
  async check(): Promise<void> {
    if (!this.owner) return;
    const now = Date.now();
    if (now - this.renewedAt >= RENEW_EVERY_MS || now - this.renewedAt >= LOCK_TTL_MS / 2) {
      const { pausedUntil } = await this.locks.renew(this.key, this.owner);
      this.renewedAt = this.pauseCheckedAt = now;
      this.pacing.pauseUntil(pausedUntil);
    } else if (now - this.pauseCheckedAt >= PAUSE_CHECK_MS) {
      this.pauseCheckedAt = now;
      this.pacing.pauseUntil(await this.locks.pausedUntil(this.key, this.owner));
    }
  }
}
