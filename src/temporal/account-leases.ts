// The worker's side of ESP account pacing: leases of an account's slots from its coordinator
// workflow (src/workflows/esp-account.ts), so that every worker together keeps to the account's
// limits. An update asks (and starts the coordinator when none runs), a signal gives it back.
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { WithStartWorkflowOperation, type Client, type WorkflowHandle } from '@temporalio/client';
import { TransientError } from '../processors/errors';
import { PacerSet, type AccountLease, type AccountLeases, type AccountLimits } from '../processors/pacing';
import {
  acquireLeaseUpdate,
  leaseQuery,
  pauseAccountSignal,
  releaseLeaseSignal,
  renewLeaseSignal,
  type LeaseAnswer,
} from '../workflows/esp-account';
import { workflowIds } from './constants';

/**
 * A lease whose holder stops renewing (a worker killed outright) ends this long after its last
 * renewal, and its slots go to the next in line.
 */
const TTL_MS = 20_000;
/** A holder renews its lease this often, and hears whether another worker's 429 paused the account. */
const RENEW_EVERY_MS = 5_000;
const RETRY_MS = 100;
/** Failed requests in a row before the activity gives up (and its retry policy takes over). */
const MAX_FAILURES = 30;

type Account = { esp: string; accountId: string; limits: AccountLimits };

export class TemporalLeases implements AccountLeases {
  constructor(
    private readonly temporal: { client: () => Promise<Client>; taskQueue: string },
    private readonly onWait?: (esp: string, ms: number) => void,
  ) {}

  async acquire(
    account: Account,
    want: number,
    options: { signal?: AbortSignal; id?: string } = {},
  ): Promise<AccountLease> {
    const { signal } = options;
    const client = await this.temporal.client();
    const lease = options.id ?? randomUUID();
    const workflowId = workflowIds.espAccount(this.temporal.taskQueue, account.esp, account.accountId);
    const handle = client.workflow.getHandle(workflowId);
    if (options.id) {
      // Handed over by the run's previous activity: a query (no history) takes it over.
      const held = await handle.query(leaseQuery, lease).catch((): LeaseAnswer => ({ state: 'unknown' }));
      if (held.state === 'granted') return this.held(handle, lease, account, held);
    }
    // Starts the coordinator when none runs; the request is answered `granted` or, after a few
    // seconds without a free slot, `waiting` (then asked again).
    const ask = () =>
      client.workflow.executeUpdateWithStart(acquireLeaseUpdate, {
        args: [{ lease, want, ttlMs: TTL_MS }],
        startWorkflowOperation: new WithStartWorkflowOperation('espAccountWorkflow', {
          workflowId,
          taskQueue: this.temporal.taskQueue,
          workflowIdConflictPolicy: 'USE_EXISTING',
          args: [{ esp: account.esp, accountId: account.accountId, limits: account.limits }],
          staticSummary: `Paces every request to ${account.esp} account ${account.accountId}`,
        }),
      });
    try {
      for (let failures = 0; ;) {
        signal?.throwIfAborted();
        let answer: LeaseAnswer;
        try {
          answer = await ask();
          failures = 0;
        } catch (err) {
          // Too many requests held at once, the coordinator continuing as new, Temporal briefly away.
          if (++failures > MAX_FAILURES) throw err;
          await sleep(Math.min(RETRY_MS * failures, 2_000) * (0.5 + Math.random()), undefined, { signal });
          continue;
        }
        if (answer.state === 'granted') return this.held(handle, lease, account, answer);
      }
    } catch (err) {
      await handle.signal(releaseLeaseSignal, { lease }).catch(() => undefined);
      throw err;
    }
  }

  private held(
    handle: WorkflowHandle,
    lease: string,
    account: Account,
    answer: Extract<LeaseAnswer, { state: 'granted' }>,
  ): AccountLease {
    let lost = false;
    const pacing = new PacerSet(account.limits, answer.slots / answer.of, answer.slots, {
      startAt: answer.startAt,
      onWait: (ms) => this.onWait?.(account.esp, ms),
      // Every other holder of the account hears of a 429 within seconds.
      onPause: (until) => void handle.signal(pauseAccountSignal, { until }).catch(() => undefined),
    });
    pacing.pauseUntil(answer.pausedUntil);
    const keepAlive = setInterval(() => {
      void (async () => {
        await handle.signal(renewLeaseSignal, { lease, ttlMs: TTL_MS });
        const now = await handle.query(leaseQuery, lease);
        if (now.state === 'granted') pacing.pauseUntil(now.pausedUntil);
        else lost = true;
      })().catch(() => undefined);
    }, RENEW_EVERY_MS);
    keepAlive.unref();
    const stop = () => clearInterval(keepAlive);
    return {
      pacing: {
        run: (fn, limit) => {
          // The coordinator gave the slots away (this worker was unreachable past the lease's
          // life): no request without them; the activity retries with a new lease.
          if (lost) throw new TransientError('the lease on the ESP account expired');
          return pacing.run(fn, limit);
        },
        pause: (ms) => pacing.pause(ms),
      },
      release: async () => {
        stop();
        await handle.signal(releaseLeaseSignal, { lease, readyAt: pacing.readyAt() }).catch(() => undefined);
      },
      handOver: stop,
    };
  }
}
