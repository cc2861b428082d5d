// One OAuth refresh per grant at a time across every process: the refresh takes a lease, a small
// document in the blob store written with conditional writes, that every worker and web server
// sees. A process that finds the lease taken waits for the holder's saved tokens instead of
// presenting the same refresh token (which a provider that rotates refresh tokens refuses, and one
// with reuse detection answers by revoking the whole grant).
import { createHash, randomBytes } from 'node:crypto';
import type { BlobStore } from '../storage';
import { changeJsonDocument } from '../storage/json-document';

interface LeaseDocument {
  holder: string;
  /** Epoch ms: a lease whose holder died (or hangs) is free to take after this. */
  expiresAt: number;
}

/** Longer than a token request may take (the ESP request timeout, 30 s by default). */
export const REFRESH_LEASE_MS = 45_000;

export class RefreshLeases {
  constructor(
    private readonly blobs: BlobStore,
    private readonly now: () => number = Date.now,
  ) {}

  /** A holder name for one refresh. */
  static holder(): string {
    return `${process.pid}-${randomBytes(6).toString('hex')}`;
  }

  /** Takes the lease on the grant stored under `secretId` for `holder`; false while another holds it. */
  take(secretId: string, holder: string): Promise<boolean> {
    return changeJsonDocument<LeaseDocument, boolean>(this.blobs, key(secretId), (doc) =>
      doc && doc.holder !== holder && doc.expiresAt > this.now()
        ? { answer: false }
        : { write: { holder, expiresAt: this.now() + REFRESH_LEASE_MS }, answer: true },
    );
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
