// The one place that wires stores, ESP processors and alerts into activities; tests call
// createActivities with their own, the worker with the configured ones.
import { Context } from '@temporalio/activity';
import type { Client } from '@temporalio/client';
import type { AlertSender } from '../alerts';
import type { Logger } from '../logger';
import type { EspMetrics } from '../metrics';
import type { BaseProcessor } from '../processors/base-processor';
import { ProcessLeases, type AccountLeases, type AccountPacing } from '../processors/pacing';
import type { ProcessorRegistry } from '../processors/registry';
import { TemporalLeases } from '../temporal/account-leases';
import type { ProcessorTarget } from '../processors/types';
import type { Configuration, Stores } from '../storage';
import { createConfigurationActivities } from './configurations';
import { createExportActivities } from './export';
import { createMaintenanceActivities } from './maintenance';
import { createSelfCheckActivities } from './self-check';
import { createSummaryActivities } from './summary';
import { createUpdateChunkActivities } from './update-chunk';

export interface ActivityDeps {
  stores: Stores;
  processors: ProcessorRegistry;
  alerts: AlertSender;
  metrics?: EspMetrics;
  /** Structured log of runs (pino); redacts secrets and emails itself. */
  log?: Logger;
  /**
   * The worker's own Temporal client and task queue: ESP account leases (src/temporal/account-leases.ts)
   * and the name of a run holding a writer. Without it (tests of processors alone) pacing is per process.
   */
  temporal?: { client: () => Promise<Client>; taskQueue: string };
  /** Shares of ESP accounts' limits; default: from the account's coordinator when `temporal` is set. */
  leases?: AccountLeases;
}

function accountLeases(deps: ActivityDeps): AccountLeases {
  const onWait = (esp: string, ms: number) => deps.metrics?.rateLimitWait.inc({ esp }, ms / 1000);
  return deps.temporal ? new TemporalLeases(deps.temporal, onWait) : new ProcessLeases(onWait);
}

/**
 * Runs `work` with a lease of `want` slots of the target's ESP account (its share of the account's
 * limits, shared with every other worker), released afterwards. The wait for the lease heartbeats
 * with the activity and ends when the activity is cancelled.
 *
 * Activities of one run that follow each other (maintenance, export, the single chunk of a small
 * run) share the run's lease (`runLease`): one hands it over (`handOver`), the next takes it over
 * without a round trip through the account's history.
 */
export async function withAccountLease<T>(
  deps: ActivityDeps,
  processor: BaseProcessor,
  target: ProcessorTarget,
  want: number,
  work: (pacing: AccountPacing) => Promise<T>,
  options: { runLease?: boolean; handOver?: (result: T) => boolean } = {},
): Promise<T> {
  const context = Context.current();
  const lease = await deps.leases!.acquire(accountOf(processor, target), want, {
    signal: context.cancellationSignal,
    id: options.runLease ? runLeaseId(context) : undefined,
  });
  let handedOver = false;
  try {
    const result = await work(lease.pacing);
    if (options.handOver?.(result)) {
      handedOver = true;
      lease.handOver();
    }
    return result;
  } finally {
    if (!handedOver) await lease.release();
  }
}

export function accountOf(processor: BaseProcessor, target: ProcessorTarget) {
  return { esp: processor.descriptor.id, accountId: target.espAccountId, limits: processor.limits() };
}

/** The lease the sequential activities of one workflow run share. */
export function runLeaseId(context: Context): string {
  return `run:${context.info.workflowExecution?.runId ?? context.info.activityId}`;
}

export function createActivities(deps: ActivityDeps) {
  // One lease provider for every activity of this worker (the pacing of the local fallback is per process).
  deps = { ...deps, leases: deps.leases ?? accountLeases(deps) };
  return {
    ...createSelfCheckActivities(deps),
    ...createConfigurationActivities(deps),
    ...createMaintenanceActivities(deps),
    ...createExportActivities(deps),
    ...createUpdateChunkActivities(deps),
    ...createSummaryActivities(deps),
  };
}

export type Activities = ReturnType<typeof createActivities>;

/** A configuration with the processor for its ESP and what that processor needs of it. */
export async function loadTarget(deps: ActivityDeps, configurationId: string) {
  const configuration = await deps.stores.configurations.get(configurationId);
  const processor = deps.processors.get(configuration.esp);
  return { configuration, processor, target: toTarget(configuration) };
}

export function toTarget(c: Configuration): ProcessorTarget {
  return {
    id: c.id,
    esp: c.esp,
    espAccountId: c.espAccountId,
    espListId: c.espListId,
    fieldName: c.fieldName,
    credentialsSecretId: c.credentialsSecretId,
    apiBaseUrl: c.apiBaseUrl,
  };
}
