// The configuration run of workers before "one writer per configuration", kept so that runs those
// workers started still replay and complete on new workers. Do not change the commands it issues.
import {
  executeChild,
  proxyActivities,
  setCurrentDetails,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../../activities';
import type { RunSummary } from '../../runs/summaries';
import type { MaintenanceReport } from '../../processors/types';
import { searchAttributes } from '../../temporal/constants';
import { failureTypes } from '../../temporal/failure-types';
import {
  describe,
  progressQuery,
  runFolder,
  runFolderFields,
  validate,
  type ConfigurationSyncInput,
  type ConfigurationSyncResult,
  type SyncProgress,
} from '../configuration-run';
import { dispatchWorkflow } from '../dispatch';
import { failureType, rootMessage } from '../failures';
import { espCallRetry } from '../retry-policies';
import { dispatchProgressSignal } from '../signals';

/** The run's short activities (context, maintenance, summary, re-authorization): a minute each. */
const oneMinuteActivities = proxyActivities<Activities>({
  startToCloseTimeout: '1 minute',
  retry: espCallRetry,
});
const { exportContacts } = proxyActivities<Activities>({
  startToCloseTimeout: '2 hours',
  heartbeatTimeout: '20 seconds',
  retry: espCallRetry,
});

/**
 * configurationSyncWorkflow as it was before one writer per configuration: maintenance -> export ->
 * dispatch child -> summary, all in this workflow. Runs started by earlier versions replay here
 * (their histories have no `one-writer` marker); new runs never take this path. Frozen: a change
 * here breaks the replay of those runs.
 */
export async function configurationSyncV1(input: ConfigurationSyncInput): Promise<ConfigurationSyncResult> {
  validate(input);
  const { configurationId, runDate } = input;
  const run = runFolder(runDate, input.folderSuffix);
  const startedAt = Date.now();
  const progress: SyncProgress = {
    phase: 'starting',
    contactsExported: 0,
    chunksDone: 0,
    chunksTotal: 0,
    updated: 0,
    rejected: 0,
  };
  setHandler(progressQuery, () => progress);
  setHandler(dispatchProgressSignal, (totals) => {
    progress.chunksDone = totals.chunksDone;
    progress.updated = totals.updated;
    progress.rejected = totals.rejected;
  });
  upsertSearchAttributes([
    { key: searchAttributes.configurationId, value: configurationId },
    { key: searchAttributes.status, value: 'running' },
  ]);

  const context = await oneMinuteActivities.loadRunContext(configurationId);
  upsertSearchAttributes([{ key: searchAttributes.esp, value: context.esp }]);
  const durations = { maintenance: 0, export: 0, dispatch: 0, total: 0 };
  const finish = async (
    status: RunSummary['status'],
    extra: Partial<Pick<RunSummary, 'reason' | 'maintenance' | 'rejectedByKind' | 'chunks'>> & {
      exported?: number;
      alreadySet?: number;
    } = {},
  ): Promise<ConfigurationSyncResult> => {
    progress.phase = 'summary';
    durations.total = Date.now() - startedAt;
    const summary: RunSummary = {
      configurationId,
      esp: context.esp,
      runDate,
      run,
      mode: input.mode,
      dryRun: !!input.dryRun,
      status,
      reason: extra.reason,
      workflowId: workflowInfo().workflowId,
      startedAt: new Date(startedAt).toISOString(),
      finishedAt: new Date().toISOString(),
      durationsMs: durations,
      maintenance: extra.maintenance,
      contacts: {
        exported: extra.exported ?? 0,
        alreadySet: extra.alreadySet ?? 0,
        updated: progress.updated,
        rejected: progress.rejected,
      },
      rejectedByKind: extra.rejectedByKind ?? {},
      chunks: extra.chunks ?? 0,
    };
    await oneMinuteActivities.writeSummary(summary);
    upsertSearchAttributes([
      { key: searchAttributes.status, value: input.dryRun && status === 'completed' ? 'dry_run' : status },
      { key: searchAttributes.contactsUpdated, value: progress.updated },
      { key: searchAttributes.contactsRejected, value: progress.rejected },
    ]);
    setCurrentDetails(describe(summary));
    progress.phase = 'done';
    return {
      configurationId,
      status,
      exported: summary.contacts.exported,
      updated: progress.updated,
      rejected: progress.rejected,
      reason: extra.reason,
    };
  };

  if (context.status !== 'active') return finish('skipped', { reason: `configuration is ${context.status}` });

  let maintenance: MaintenanceReport | undefined;
  const needsReauth = async (err: unknown) => {
    const reason = rootMessage(err);
    await oneMinuteActivities.markNeedsReauth({ configurationId, reason });
    return finish('needs_reauth', { reason, maintenance });
  };

  if (context.maintenance) {
    progress.phase = 'maintenance';
    const t = Date.now();
    try {
      maintenance = await oneMinuteActivities.runMaintenance(configurationId);
    } catch (err) {
      if (failureType(err) === failureTypes.invalidCredentials) return needsReauth(err);
      throw err;
    }
    durations.maintenance = Date.now() - t;
  }

  progress.phase = 'export';
  let t = Date.now();
  let exported;
  try {
    exported = await exportContacts({ configurationId, ...runFolderFields(run), mode: input.mode });
  } catch (err) {
    if (failureType(err) === failureTypes.invalidCredentials) return needsReauth(err);
    throw err;
  }
  durations.export = Date.now() - t;
  progress.contactsExported = exported.contacts;
  progress.chunksTotal = exported.chunkCount;
  const counts = {
    exported: exported.contacts,
    alreadySet: exported.alreadySet,
    chunks: exported.chunkCount,
    maintenance,
  };
  if (input.dryRun) return finish('completed', counts);

  progress.phase = 'dispatch';
  t = Date.now();
  try {
    const totals = await executeChild(dispatchWorkflow, {
      workflowId: `${workflowInfo().workflowId}/dispatch`,
      staticSummary: `Dispatch of ${exported.chunkCount} chunks (${exported.contacts} contacts) for ${configurationId}`,
      args: [
        {
          configurationId,
          ...runFolderFields(run),
          chunkCount: exported.chunkCount,
          window: context.concurrency,
          onlyPending: !!input.onlyPending,
        },
      ],
    });
    progress.chunksDone = totals.chunksDone;
    progress.updated = totals.updated;
    progress.rejected = totals.rejected;
    durations.dispatch = Date.now() - t;
    return finish('completed', { ...counts, rejectedByKind: totals.rejectedByKind });
  } catch (err) {
    if (failureType(err) === failureTypes.invalidCredentials) return needsReauth(err);
    throw err;
  }
}
