// How a run ends: its deadline, and the summary, status and alerts every ending leaves.
import {
  ApplicationFailure,
  CancellationScope,
  getExternalWorkflowHandle,
  isCancellation,
  setCurrentDetails,
  sleep,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { RunSummary } from '../../runs/summaries';
import { runNotes } from '../../runs/report';
import { searchAttributes } from '../../temporal/constants';
import { failureTypes } from '../../temporal/failure-types';
import { accountFreedSignal, describe, runFolder, type ConfigurationSyncResult } from '../configuration-run';
import { failureType, rootMessage } from '../failures';
import { Busy, DeadlinePassed, steps, store, type RunState, type SyncRun } from './state';

const DEADLINE = Symbol('deadline');

/** Runs `fn`; past the deadline, cancels it, waits for it to stop, and throws DeadlinePassed. */
export async function withDeadline<T>(deadlineAt: number, fn: () => Promise<T>): Promise<T> {
  const work = new CancellationScope();
  const done = work.run(fn);
  // The timer is left to lapse when `fn` is done first: a closed run drops it.
  const passed = sleep(Math.max(1, deadlineAt - Date.now())).then(
    () => DEADLINE,
    () => new Promise<never>(() => undefined), // the run itself was cancelled: `done` says so
  );
  const first = await Promise.race([done, passed]);
  if (first !== DEADLINE) return first as T;
  work.cancel();
  await done.catch(() => undefined);
  throw new DeadlinePassed('the run passed its deadline and was stopped');
}

/** Every way a run can end but completing: recorded, and (for real failures) rethrown. */
export async function ended(
  run: SyncRun,
  state: RunState | undefined,
  err: unknown,
): Promise<ConfigurationSyncResult> {
  const { input } = run;
  const end = (status: RunSummary['status'], reason: string) => finish(run, state, status, reason);
  if (err instanceof Busy) return end('busy', err.message);
  // No configuration to record a run of (an unknown id, an unreadable document).
  if (
    !state &&
    [failureTypes.configurationNotFound, failureTypes.corruptData].includes(failureType(err) as never)
  ) {
    throw err;
  }
  if (failureType(err) === failureTypes.invalidCredentials) {
    const reason = rootMessage(err);
    await CancellationScope.nonCancellable(() =>
      store.markNeedsReauth({ configurationId: input.configurationId, reason }),
    );
    return end('needs_reauth', reason);
  }
  if (failureType(err) === failureTypes.configurationInactive) return end('cancelled', rootMessage(err));
  if (err instanceof DeadlinePassed) {
    await end('timed_out', err.message);
    throw ApplicationFailure.nonRetryable(err.message, failureTypes.runDeadline);
  }
  if (isCancellation(err)) {
    await end('cancelled', 'the run was cancelled');
    throw err;
  }
  await end('failed', rootMessage(err));
  throw err;
}

/** Summary, status and search attributes, and the account given back: written even when cancelled. */
export async function finish(
  run: SyncRun,
  state: RunState | undefined,
  status: RunSummary['status'],
  reason?: string,
): Promise<ConfigurationSyncResult> {
  const { input, owner, progress, handoff } = run;
  progress.phase = 'summary';
  const startedAt = state?.startedAt ?? Date.now();
  const manifest = state?.manifest;
  const summary: RunSummary = {
    configurationId: input.configurationId,
    esp: state?.context.esp ?? '',
    runDate: input.runDate,
    run: state?.context.folder ?? runFolder(input.runDate, input.folderSuffix),
    mode: input.mode,
    dryRun: !!input.dryRun,
    status,
    reason: reason?.slice(0, 500),
    workflowId: workflowInfo().workflowId,
    startedAt: new Date(startedAt).toISOString(),
    finishedAt: new Date().toISOString(),
    durationsMs: {
      ...(state?.durationsMs ?? { maintenance: 0, export: 0, dispatch: 0 }),
      total: Date.now() - startedAt,
    },
    maintenance: state?.maintenance,
    contacts: {
      exported: manifest?.contacts ?? progress.contactsExported,
      alreadySet: manifest?.alreadySet ?? 0,
      updated: progress.updated,
      rejected: progress.rejected,
    },
    rejectedByKind: state?.totals.rejectedByKind ?? {},
    chunks: manifest?.chunkCount ?? progress.chunksTotal,
    ...(manifest?.foreignValues ? { foreignValues: manifest.foreignValues } : {}),
    ...(manifest?.replacing !== undefined
      ? { replacing: manifest.replacing, replacedValues: state?.totals.replaced ?? 0 }
      : {}),
  };
  // A busy run never held the account nor a folder: it gives nothing back and leaves no files.
  await CancellationScope.nonCancellable(async () => {
    await steps(run).recordRun(
      summary,
      status === 'busy' ? { files: false } : { lock: owner, lockKey: state?.context.accountLock },
    );
    // The runs waiting for the account take it now (a waiter that has ended is no matter).
    if (handoff.on && status !== 'busy') {
      await Promise.all(
        [...handoff.waiters].map((id) =>
          getExternalWorkflowHandle(id)
            .signal(accountFreedSignal)
            .catch(() => undefined),
        ),
      );
    }
    upsertSearchAttributes([
      { key: searchAttributes.configurationId, value: input.configurationId },
      { key: searchAttributes.status, value: input.dryRun && status === 'completed' ? 'dry_run' : status },
      { key: searchAttributes.contactsUpdated, value: progress.updated },
      { key: searchAttributes.contactsRejected, value: progress.rejected },
    ]);
    setCurrentDetails(describe(summary));
  });
  progress.phase = 'done';
  const notes = runNotes(summary);
  return {
    configurationId: input.configurationId,
    status,
    exported: summary.contacts.exported,
    updated: progress.updated,
    rejected: progress.rejected,
    reason: summary.reason,
    ...(notes.length ? { notes } : {}),
  };
}
