import { proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { SelfCheckResult } from '../activities/self-check';

const { selfCheck } = proxyActivities<Activities>({
  startToCloseTimeout: '30 seconds',
  retry: { maximumAttempts: 3 },
});

/** End-to-end probe used by `espresso doctor`: a worker is polling and can use both stores. */
export async function selfCheckWorkflow(): Promise<SelfCheckResult> {
  return selfCheck();
}
