import {
  ApplicationFailure,
  CancellationScope,
  ChildWorkflowCancellationType,
  getExternalWorkflowHandle,
  isCancellation,
  patched,
  proxyActivities,
  setCurrentDetails,
  setHandler,
  sleep,
  startChild,
  upsertSearchAttributes,
  workflowInfo,
  WorkflowIdReusePolicy,
} from '@temporalio/workflow';
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/common';
import type { Activities } from '../activities';
import {
  describe,
  progressQuery,
  runFolder,
  validate,
  type ConfigurationSyncInput,
  type ConfigurationSyncResult,
  type SyncProgress,
} from './configuration-run';
import type { RunContext } from '../activities/configurations';
import type { RunSummary } from '../activities/summary';
import type { ExportManifest } from '../runs/files';
import type { MaintenanceReport } from '../processors/types';
import { searchAttributes, workflowIds } from '../temporal/constants';
import { failureTypes } from '../temporal/failure-types';
import { failureType, rootMessage } from './failures';
import { configurationSyncV1 } from './legacy/configuration-sync-v1';
import { exportOptions, maintenanceOptions, storeOptions } from './retry-policies';
import { configurationDoneSignal, writerProgressSignal, type ConfigurationOutcome } from './signals';
import { writerWorkflow, type WriterResult } from './writer';

export {
  progressQuery,
  type ConfigurationSyncInput,
  type ConfigurationSyncResult,
  type SyncProgress,
} from './configuration-run';

/** Runs with this marker write through the configuration's one writer (src/workflows/writer.ts). */
export const ONE_WRITER_PATCH = 'one-writer';
/** How long a run may take when its starter sets no deadline. */
export const DEFAULT_DEADLINE_MS = 20 * 60 * 60 * 1000;

const store = proxyActivities<Activities>(storeOptions);
const { runMaintenance } = proxyActivities<Activities>(maintenanceOptions);

/** The run's counts, filled in as its steps report them. */
class RunState {
  readonly startedAt = Date.now();
  folder: string;
  esp = '';
  maintenance?: MaintenanceReport;
  manifest?: ExportManifest;
  rejectedByKind: Record<string, number> = {};
  durations = { maintenance: 0, export: 0, dispatch: 0, total: 0 };
  progress: SyncProgress = {
    phase: 'starting',
    contactsExported: 0,
    chunksDone: 0,
    chunksTotal: 0,
    updated: 0,
    rejected: 0,
  };

  constructor(readonly input: ConfigurationSyncInput) {
    this.folder = runFolder(input.runDate, input.runId);
  }

  written(result: WriterResult): void {
    this.maintenance = result.maintenance;
    this.manifest = result.manifest;
    this.durations = { ...result.durationsMs, total: 0 };
    this.rejectedByKind = result.totals.rejectedByKind;
    Object.assign(this.progress, {
      contactsExported: result.manifest?.contacts ?? 0,
      chunksTotal: result.manifest?.chunkCount ?? 0,
      chunksDone: result.totals.chunksDone,
      updated: result.totals.updated,
      rejected: result.totals.rejected,
    });
  }
}

/** The configuration's writer is held by another run (named in the message). */
class WriterBusy extends Error {}
/** The run passed its deadline; its work was cancelled. */
class DeadlinePassed extends Error {}

/**
 * One configuration's run: claim its folder, then write through the configuration's one writer
 * (maintenance -> export -> dispatch, in the child `writer/<configurationId>`), then the summary.
 * However it ends (completed, busy, needs_reauth, failed, timed_out, cancelled) it leaves a summary,
 * a status and, for the daily run, an outcome. Only ids, keys and counts pass through here.
 */
export async function configurationSyncWorkflow(
  input: ConfigurationSyncInput,
): Promise<ConfigurationSyncResult> {
  if (!patched(ONE_WRITER_PATCH)) return configurationSyncV1(input);
  validate(input);
  const run = new RunState(input);
  setHandler(progressQuery, () => run.progress);
  setHandler(writerProgressSignal, (p) => void Object.assign(run.progress, p));

  let context: RunContext;
  try {
    context = await store.startRun({
      configurationId: input.configurationId,
      folder: run.folder,
      owner: { workflowId: workflowInfo().workflowId, runId: workflowInfo().runId },
      mode: input.mode,
      dryRun: !!input.dryRun,
    });
  } catch (err) {
    // No configuration to report on (unknown id, unreadable document): the run fails as it is.
    upsertSearchAttributes([
      { key: searchAttributes.configurationId, value: input.configurationId },
      { key: searchAttributes.status, value: 'failed' },
    ]);
    await report(input, {
      outcome: failureType(err) === failureTypes.corruptData ? 'unreadable' : 'failed',
      reason: rootMessage(err),
    });
    throw err;
  }
  run.folder = context.folder;
  run.esp = context.esp;
  upsertSearchAttributes([
    { key: searchAttributes.configurationId, value: input.configurationId },
    { key: searchAttributes.esp, value: context.esp },
    { key: searchAttributes.status, value: 'running' },
  ]);

  try {
    if (context.status !== 'active')
      return await finish(run, 'skipped', `configuration is ${context.status}`);
    const deadline = input.deadlineMs ?? DEFAULT_DEADLINE_MS;
    if (input.dryRun) await withDeadline(deadline, () => dryRun(run, context));
    else run.written(await withDeadline(deadline, () => write(run, context, deadline)));
    return await finish(run, 'completed');
  } catch (err) {
    return ended(run, err);
  }
}

/** Maintenance (report only) and an export into the run's own folder; no writer, no ESP writes. */
async function dryRun(run: RunState, context: RunContext): Promise<void> {
  const { configurationId } = run.input;
  if (context.maintenance) {
    run.progress.phase = 'maintenance';
    run.maintenance = await runMaintenance({ configurationId, dryRun: true });
  }
  run.progress.phase = 'export';
  const { exportContacts } = proxyActivities<Activities>(
    exportOptions(run.input.deadlineMs ?? DEFAULT_DEADLINE_MS),
  );
  // Without the field (maintenance would create it) every contact needs a value: list them all.
  const mode = run.maintenance?.field === 'would_create' ? 'full' : run.input.mode;
  run.manifest = await exportContacts({ configurationId, runDate: run.folder, mode, dryRun: true });
  run.progress.contactsExported = run.manifest.contacts;
  run.progress.chunksTotal = run.manifest.chunkCount;
}

/** The write itself, in the configuration's writer: at most one runs per configuration. */
async function write(run: RunState, context: RunContext, deadlineMs: number): Promise<WriterResult> {
  const { configurationId } = run.input;
  run.progress.phase = context.maintenance ? 'maintenance' : 'export';
  let writer;
  try {
    writer = await startChild(writerWorkflow, {
      workflowId: workflowIds.writer(configurationId),
      workflowIdReusePolicy: WorkflowIdReusePolicy.ALLOW_DUPLICATE,
      // The lock is held until the writer has really stopped.
      cancellationType: ChildWorkflowCancellationType.WAIT_CANCELLATION_COMPLETED,
      staticSummary: `Writes ${configurationId} for ${workflowInfo().workflowId}`,
      args: [
        {
          configurationId,
          runFolder: run.folder,
          mode: run.input.mode,
          maintenance: context.maintenance,
          window: context.concurrency,
          retryOf: run.input.retryOf,
          deadlineMs,
        },
      ],
    });
  } catch (err) {
    if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
    const holder = await store.describeWriter(configurationId);
    throw new WriterBusy(
      `another run is writing this configuration${holder ? `: ${holder}` : ''}; this run wrote nothing`,
    );
  }
  return writer.result();
}

/**
 * Runs `fn`; when it takes longer than `ms`, cancels it, waits for it to stop, and throws
 * DeadlinePassed. (The timer is left to lapse when `fn` is done first: a closed run drops it.)
 */
async function withDeadline<T>(ms: number, fn: () => Promise<T>): Promise<T> {
  const work = new CancellationScope();
  const done = work.run(fn);
  const passed = sleep(ms).then(
    () => DEADLINE,
    () => new Promise<never>(() => undefined), // the run itself was cancelled: `done` says so
  );
  const first = await Promise.race([done, passed]);
  if (first !== DEADLINE) return first as T;
  work.cancel();
  await done.catch(() => undefined);
  throw new DeadlinePassed(
    `the run passed its deadline of ${Math.round(ms / 60_000)} minutes and was stopped`,
  );
}
const DEADLINE = Symbol('deadline');

/** Every way a run can end but completing: recorded, reported, and (for real failures) rethrown. */
async function ended(run: RunState, err: unknown): Promise<ConfigurationSyncResult> {
  if (err instanceof WriterBusy) return finish(run, 'busy', err.message);
  if (failureType(err) === failureTypes.invalidCredentials) {
    const reason = rootMessage(err);
    await CancellationScope.nonCancellable(() =>
      store.markNeedsReauth({ configurationId: run.input.configurationId, reason }),
    );
    return finish(run, 'needs_reauth', reason);
  }
  if (failureType(err) === failureTypes.configurationInactive) {
    return finish(run, 'cancelled', rootMessage(err));
  }
  if (err instanceof DeadlinePassed) {
    await finish(run, 'timed_out', err.message);
    throw ApplicationFailure.nonRetryable(err.message, failureTypes.runDeadline);
  }
  if (isCancellation(err)) {
    await finish(run, 'cancelled', 'the run was cancelled');
    throw err;
  }
  await finish(run, 'failed', rootMessage(err));
  throw err;
}

/** Summary, status, search attributes and the daily run's outcome: written even when cancelled. */
async function finish(
  run: RunState,
  status: RunSummary['status'],
  reason?: string,
): Promise<ConfigurationSyncResult> {
  const { input, progress } = run;
  progress.phase = 'summary';
  run.durations.total = Date.now() - run.startedAt;
  const summary: RunSummary = {
    configurationId: input.configurationId,
    esp: run.esp,
    runDate: input.runDate,
    run: run.folder,
    mode: input.mode,
    dryRun: !!input.dryRun,
    status,
    reason: reason?.slice(0, 500),
    workflowId: workflowInfo().workflowId,
    startedAt: new Date(run.startedAt).toISOString(),
    finishedAt: new Date().toISOString(),
    durationsMs: run.durations,
    maintenance: run.maintenance,
    contacts: {
      exported: run.manifest?.contacts ?? progress.contactsExported,
      alreadySet: run.manifest?.alreadySet ?? 0,
      updated: progress.updated,
      rejected: progress.rejected,
    },
    rejectedByKind: run.rejectedByKind,
    chunks: run.manifest?.chunkCount ?? progress.chunksTotal,
    ...(run.manifest?.foreignValues ? { foreignValues: run.manifest.foreignValues } : {}),
  };
  await CancellationScope.nonCancellable(async () => {
    await store.recordRun(summary);
    upsertSearchAttributes([
      { key: searchAttributes.status, value: input.dryRun && status === 'completed' ? 'dry_run' : status },
      { key: searchAttributes.contactsUpdated, value: progress.updated },
      { key: searchAttributes.contactsRejected, value: progress.rejected },
    ]);
    setCurrentDetails(describe(summary));
    await report(input, {
      outcome: status,
      esp: run.esp,
      updated: progress.updated,
      rejected: progress.rejected,
      reason: summary.reason,
    });
  });
  progress.phase = 'done';
  return {
    configurationId: input.configurationId,
    status,
    exported: summary.contacts.exported,
    updated: progress.updated,
    rejected: progress.rejected,
    reason: summary.reason,
  };
}

/** Tells the daily run that started this one how it ended; a daily run that is gone is not an error. */
async function report(
  input: ConfigurationSyncInput,
  outcome: Omit<ConfigurationOutcome, 'configurationId'>,
): Promise<void> {
  if (!input.reportTo) return;
  await CancellationScope.nonCancellable(() =>
    getExternalWorkflowHandle(input.reportTo!)
      .signal(configurationDoneSignal, { configurationId: input.configurationId, ...outcome })
      .catch(() => undefined),
  );
}
