import type { Connection } from '@temporalio/client';
import { withTimeout } from '../lib/timeout';
import type { Stores } from '../storage';

export type DependencyState = { state: 'up' } | { state: 'down'; error: string };

const CHECK_TIMEOUT_MS = 3_000;

async function probe(check: () => Promise<unknown>): Promise<DependencyState> {
  try {
    await withTimeout(check(), CHECK_TIMEOUT_MS, `no answer within ${CHECK_TIMEOUT_MS} ms`);
    return { state: 'up' };
  } catch (err) {
    // Only the message: never a stack, and adapters' messages carry no credentials.
    return { state: 'down', error: (err as Error).message.split('\n')[0]!.slice(0, 200) };
  }
}

/** Each dependency's state, checked concurrently with a short timeout each. */
export async function checkDependencies(deps: { stores: Stores; temporal: () => Promise<Connection> }) {
  const [temporal, blobStore, secretStore] = await Promise.all([
    probe(async () => (await deps.temporal()).workflowService.getSystemInfo({})),
    probe(() => deps.stores.blobs.list('configurations/')),
    probe(() => deps.stores.secrets.list()),
  ]);
  return { temporal, blobStore, secretStore };
}
