import { randomBytes } from 'node:crypto';
import type { ActivityDeps } from './deps';

export interface SelfCheckResult {
  blobStore: string;
  secretStore: string;
  configurations: number;
  /**
   * The worker's clock as the activity started and ended (epoch ms): `doctor` compares it with
   * the times the Temporal server gave those events (workers of earlier versions send none).
   */
  clock?: { startedAt: number; endedAt: number };
}

/** Proves a worker can reach both stores: round-trips a blob and a secret, counts configurations. */
export function createSelfCheckActivities({ stores }: ActivityDeps) {
  return {
    async selfCheck(): Promise<SelfCheckResult> {
      const startedAt = Date.now();
      const nonce = randomBytes(6).toString('hex');
      const blobKey = `health/self-check-${nonce}.json`;
      await stores.blobs.put(blobKey, JSON.stringify({ nonce }));
      const readBack = JSON.parse((await stores.blobs.get(blobKey)).body.toString('utf8')) as {
        nonce: string;
      };
      await stores.blobs.delete(blobKey);
      if (readBack.nonce !== nonce) throw new Error(`blob store returned another object for ${blobKey}`);

      const secretId = `health/self-check-${nonce}`;
      await stores.secrets.put(secretId, nonce);
      const secret = await stores.secrets.get(secretId);
      await stores.secrets.delete(secretId);
      if (secret !== nonce) throw new Error(`secret store returned another value for ${secretId}`);

      return {
        blobStore: stores.blobs.description,
        secretStore: stores.secrets.description,
        configurations: await stores.configurations.count(),
        clock: { startedAt, endedAt: Date.now() },
      };
    },
  };
}
