// Flows waiting for the publisher to pick a list: credentials the ESP has validated, kept until the
// choice. A non-secret record in the blob store (names and ids of the lists, claimed by a
// conditional write so each is used once) and the credentials in the secret store. OAuth flows
// store nothing before the ESP answers the callback (the state and the flow cookie carry them);
// the callback leaves only a `used` record so its state cannot be replayed. Every record expires
// with the state (10 minutes) and `sweep` removes it with its secret.
import { createHash } from 'node:crypto';
import type { Logger } from '../logger';
import type { AccountInfo, Credentials } from '../processors/types';
import { ConflictError, NotFoundError, type BlobStore, type SecretStore } from '../storage';
import { STATE_TTL_MS } from './security';

export interface PendingFlow {
  esp: string;
  /** sha256 of the browser's flow cookie: only that browser may continue the flow. */
  binding: string;
  /** `authorizing`: written by versions that stored OAuth starts; only swept now. */
  stage: 'authorizing' | 'choose_list' | 'used';
  reauthorizeId?: string;
  /** For the list page: names and ids only. */
  account?: AccountInfo;
  createdAt: number;
}

export interface PendingSecret {
  credentials?: Credentials;
}

export type ClaimProblem = 'unknown' | 'used' | 'expired' | 'other_browser' | 'other_esp';

const PREFIX = 'web/pending/';
const SECRET_PREFIX = 'pending/';
const key = (nonce: string) => `${PREFIX}${nonce}.json`;
const secretId = (nonce: string) => `${SECRET_PREFIX}${nonce}`;
const NONCE = /^[A-Za-z0-9_-]{10,64}$/;
export const hashBinding = (binding: string) => createHash('sha256').update(binding).digest('hex');

export class PendingFlows {
  constructor(
    private readonly blobs: BlobStore,
    private readonly secrets: SecretStore,
  ) {}

  /** The record first, then its secret: a secret without a record is always a leftover. */
  async put(nonce: string, flow: PendingFlow, secret: PendingSecret): Promise<void> {
    await this.blobs.put(key(nonce), JSON.stringify(flow));
    await this.secrets.put(secretId(nonce), JSON.stringify(secret));
  }

  /** Marks an OAuth state's nonce used, once: false when it was used before. */
  async markUsed(nonce: string, now = Date.now()): Promise<boolean> {
    if (!NONCE.test(nonce)) return false;
    try {
      await this.blobs.put(key(nonce), JSON.stringify({ stage: 'used', createdAt: now }), {
        ifNoneMatch: '*',
      });
      return true;
    } catch (err) {
      if (err instanceof ConflictError) return false;
      throw err;
    }
  }

  /**
   * Takes the flow for this browser and this ESP's route, once. A flow posted to another ESP's
   * route is refused and left as it was: its credentials belong to the ESP that validated them.
   */
  async claim(
    nonce: string,
    stage: PendingFlow['stage'],
    binding: string | undefined,
    esp: string,
    now = Date.now(),
  ): Promise<{ flow: PendingFlow; secret: PendingSecret } | { problem: ClaimProblem }> {
    if (!NONCE.test(nonce)) return { problem: 'unknown' };
    let stored;
    try {
      stored = await this.blobs.get(key(nonce));
    } catch (err) {
      if (err instanceof NotFoundError) return { problem: 'unknown' };
      throw err;
    }
    const flow = JSON.parse(stored.body.toString('utf8')) as PendingFlow;
    if (flow.stage === 'used') return { problem: 'used' };
    if (flow.stage !== stage) return { problem: 'unknown' };
    if (flow.esp !== esp) return { problem: 'other_esp' };
    if (!binding || hashBinding(binding) !== flow.binding) return { problem: 'other_browser' };
    if (flow.createdAt + STATE_TTL_MS < now) return { problem: 'expired' };
    try {
      await this.blobs.put(key(nonce), JSON.stringify({ ...flow, stage: 'used' }), { ifMatch: stored.etag });
    } catch (err) {
      if (err instanceof ConflictError) return { problem: 'used' };
      throw err;
    }
    let secret: PendingSecret = {};
    try {
      secret = JSON.parse(await this.secrets.get(secretId(nonce))) as PendingSecret;
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err;
    }
    return { flow, secret };
  }

  /** Forgets the flow's secrets (the record stays, marked used, so replays are refused). */
  async finish(nonce: string): Promise<void> {
    await this.secrets.delete(secretId(nonce));
  }

  /**
   * Removes every record older than a state's lifetime, with its secret; with `leftovers`, also
   * secrets that have no record (left by a crash, or by versions that wrote the secret first).
   * Safe beside running flows and other web servers sweeping: a live flow's record is younger,
   * and a secret is only ever written after its record.
   */
  async sweep(options: { now?: number; leftovers?: boolean } = {}): Promise<number> {
    const now = options.now ?? Date.now();
    let removed = 0;
    const live = new Set<string>();
    for (const k of await this.blobs.list(PREFIX)) {
      const nonce = k.slice(PREFIX.length, -'.json'.length);
      let createdAt = 0; // an unreadable record is removed
      try {
        const flow = JSON.parse((await this.blobs.get(k)).body.toString('utf8')) as Partial<PendingFlow>;
        if (typeof flow.createdAt === 'number') createdAt = flow.createdAt;
      } catch (err) {
        if (err instanceof NotFoundError) continue;
        if (!(err instanceof SyntaxError)) throw err;
      }
      if (createdAt + STATE_TTL_MS >= now) {
        live.add(nonce);
        continue;
      }
      await this.secrets.delete(secretId(nonce));
      await this.blobs.delete(k);
      removed++;
    }
    if (!options.leftovers) return removed;
    for (const id of await this.secrets.list()) {
      if (!id.startsWith(SECRET_PREFIX)) continue;
      const nonce = id.slice(SECRET_PREFIX.length);
      if (live.has(nonce) || (await this.exists(key(nonce)))) continue;
      await this.secrets.delete(id);
      removed++;
    }
    return removed;
  }

  /**
   * Sweeps now (leftovers included) and then every `everyMs`; returns the function that stops it.
   * Each web server sweeps; sweeps of several servers do not conflict.
   */
  sweepEvery(everyMs: number, log: Logger): () => void {
    const sweep = (leftovers: boolean) =>
      this.sweep({ leftovers }).then(
        (removed) => removed && log.info({ removed }, 'removed expired connect flows'),
        (err: Error) => log.warn({ err: err.message }, 'could not sweep expired connect flows'),
      );
    void sweep(true);
    const timer = setInterval(() => void sweep(false), everyMs);
    timer.unref();
    return () => clearInterval(timer);
  }

  private async exists(k: string): Promise<boolean> {
    try {
      await this.blobs.get(k);
      return true;
    } catch (err) {
      if (err instanceof NotFoundError) return false;
      throw err;
    }
  }
}
