// Flows in progress (an OAuth round trip, a list to pick): a non-secret record in the blob store,
// claimed by a conditional write so each is used once, and its secrets (PKCE verifier, validated
// credentials) in the secret store. Both expire with the state (10 minutes).
import { createHash } from 'node:crypto';
import type { AccountInfo, Credentials } from '../processors/types';
import { ConflictError, NotFoundError, type BlobStore, type SecretStore } from '../storage';
import { STATE_TTL_MS } from './security';

export interface PendingFlow {
  esp: string;
  /** sha256 of the browser's flow cookie: only that browser may continue the flow. */
  binding: string;
  stage: 'authorizing' | 'choose_list' | 'used';
  reauthorizeId?: string;
  /** For the list page: names and ids only. */
  account?: AccountInfo;
  createdAt: number;
}

export interface PendingSecret {
  codeVerifier?: string;
  credentials?: Credentials;
}

export type ClaimProblem = 'unknown' | 'used' | 'expired' | 'other_browser' | 'other_esp';

const key = (nonce: string) => `web/pending/${nonce}.json`;
const secretId = (nonce: string) => `pending/${nonce}`;
export const hashBinding = (binding: string) => createHash('sha256').update(binding).digest('hex');

export class PendingFlows {
  constructor(
    private readonly blobs: BlobStore,
    private readonly secrets: SecretStore,
  ) {}

  async put(nonce: string, flow: PendingFlow, secret: PendingSecret): Promise<void> {
    await this.secrets.put(secretId(nonce), JSON.stringify(secret));
    await this.blobs.put(key(nonce), JSON.stringify(flow));
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
    if (!/^[A-Za-z0-9_-]{10,64}$/.test(nonce)) return { problem: 'unknown' };
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
}
