import { randomBytes } from 'node:crypto';
import type { BaseProcessor } from '../../src/processors/base-processor';
import type { ProcessorTarget } from '../../src/processors/types';
import type { SecretStore } from '../../src/storage';

/**
 * What the processor contract suite needs from one ESP's fake server. Each ESP provides one
 * (test/processors/<esp>-harness.ts); the suite is written once (contract.ts).
 */
export interface ProcessorHarness {
  processor: BaseProcessor;
  secrets: SecretStore;
  /** A target on a fresh list, credentials stored in `secrets` by the API-key path. */
  connectWithApiKey(): Promise<ProcessorTarget>;
  /** The same by the OAuth path (consent approved on the fake), when the ESP has OAuth. */
  connectWithOAuth?(): Promise<ProcessorTarget>;
  /** A key the fake refuses. */
  invalidApiKey: string;
  seed(target: ProcessorTarget, contacts: number): Promise<string[]>;
  deleteField(target: ProcessorTarget): Promise<void>;
  fieldExists(target: ProcessorTarget): Promise<boolean>;
  valueOf(target: ProcessorTarget, contactId: string): Promise<string | undefined>;
  /** Makes the ESP refuse updates of these contacts with a per-row error. */
  rejectRows(target: ProcessorTarget, contactIds: string[]): Promise<void>;
  /**
   * Makes every API call answer 429 (or stop doing so); returns the delay the ESP announces, to
   * within `toleranceMs` below it where the ESP announces a reset time rather than a delay.
   */
  rateLimit(target: ProcessorTarget, on: boolean): Promise<{ retryAfterMs: number; toleranceMs?: number }>;
  /** OAuth ESPs: expire the access tokens now; revoke every grant; count token grants answered. */
  expireAccessTokens?(target: ProcessorTarget): Promise<void>;
  revokeGrants?(target: ProcessorTarget): Promise<void>;
  tokenGrants?(): number;
  /** False for ESPs whose token endpoint keeps the refresh token (default: it rotates). */
  rotatesRefreshTokens?: boolean;
  stop(): Promise<void>;
}

/**
 * A connected configuration's target (id `cfg_<suffix>0000`), its credentials saved where the
 * processor reads them.
 */
export async function savedTarget(
  secrets: SecretStore,
  credentials: unknown,
  target: Omit<ProcessorTarget, 'id' | 'credentialsSecretId'>,
  suffix = randomBytes(4).toString('hex'),
): Promise<ProcessorTarget> {
  const id = `cfg_${suffix}0000`;
  const saved = { id, credentialsSecretId: `credentials/${id}`, ...target };
  await secrets.put(saved.credentialsSecretId, JSON.stringify(credentials));
  return saved;
}
