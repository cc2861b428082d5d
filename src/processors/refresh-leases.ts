// One OAuth refresh per grant at a time across every process: the refresh takes a lease, a small
// document in the blob store written with conditional writes, that every worker and web server
// sees. A process that finds the lease taken waits for the holder's saved tokens instead of
// presenting the same refresh token (which a provider that rotates refresh tokens refuses, and one
// with reuse detection answers by revoking the whole grant).
import { createHash, randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { BlobStore } from '../storage';
import { changeJsonDocument } from '../storage/json-document';

interface LeaseDocument {
  holder: string;
  /** Epoch ms: a lease whose holder died (or hangs) is free to take after this. */
  expiresAt: number;
}

/**
 * The least a lease lasts: longer than a token request may take at the default ESP request timeout
 * (30 s) and the rotated tokens' save. A refresh asks for its request timeout plus this margin's
 * 15 s when that is longer (ESPRESSO_ESP_TIMEOUT_MS goes up to 300 s): a lease that lapsed while its
 * holder's request was still on its way let a second process present the same refresh token,
 * which a provider with reuse detection answers by revoking the grant.
 */
export const REFRESH_LEASE_MS = 45_000;
const SAVE_MARGIN_MS = 15_000;

/** How long a refresh whose token request may take `requestTimeoutMs` holds its lease. */
export function leaseMs(requestTimeoutMs: number): number {
  return Math.max(REFRESH_LEASE_MS, requestTimeoutMs + SAVE_MARGIN_MS);
}

export class RefreshLeases {
  constructor(
    private readonly blobs: BlobStore,
    private readonly now: () => number = Date.now,
  ) {}

  /** A holder name for one refresh. */
  static holder(): string {
    return `${process.pid}-${randomBytes(6).toString('hex')}`;
  }

  /**
   * Takes the lease on the grant stored under `secretId` for `holder`, for `ms`; false while another
   * holds it.
   */
  take(secretId: string, holder: string, ms = REFRESH_LEASE_MS): Promise<boolean> {
    return changeJsonDocument<LeaseDocument, boolean>(this.blobs, key(secretId), (doc) =>
      doc && doc.holder !== holder && doc.expiresAt > this.now()
        ? { answer: false }
        : { write: { holder, expiresAt: this.now() + ms }, answer: true },
    );
  }

  /**
   * Runs `fn` holding the lease on the grant stored under `secretId`, once a refresh under way has
   * ended (waiting up to `waitMs`): a reconnect saves its new credentials this way, so a refresh
   * of the grant they replace never writes its tokens over them.
   */
  async withLease<T>(secretId: string, fn: () => Promise<T>, waitMs = 60_000): Promise<T> {
    const holder = RefreshLeases.holder();
    const until = this.now() + waitMs;
    while (!(await this.take(secretId, holder))) {
      if (this.now() > until) {
        throw new Error('a refresh of these OAuth tokens has been under way for too long; try again');
      }
      await sleep(200);
    }
    try {
      return await fn();
    } finally {
      await this.release(secretId, holder).catch(() => undefined); // it expires on its own
    }
  }

  /** Gives the lease back (when `holder` still has it). */
  async release(secretId: string, holder: string): Promise<void> {
    await changeJsonDocument<LeaseDocument, void>(this.blobs, key(secretId), (doc) =>
      doc?.holder === holder && doc.expiresAt > this.now()
        ? { write: { holder, expiresAt: 0 }, answer: undefined }
        : { answer: undefined },
    );
  }
}

function key(secretId: string): string {
  return `locks/oauth/${createHash('sha256').update(secretId).digest('hex').slice(0, 32)}.json`;
}
