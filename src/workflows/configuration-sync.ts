import {
  ApplicationFailure,
  defineQuery,
  executeChild,
  proxyActivities,
  setCurrentDetails,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { RunSummary } from '../activities/summary';
import type { MaintenanceReport } from '../processors/types';
import { searchAttributes } from '../temporal/constants';
import { failureTypes } from '../temporal/failure-types';
import { dispatchWorkflow } from './dispatch';
import { failureType, rootMessage } from './failures';
import { espCallRetry } from './retry-policies';
import { dispatchProgressSignal } from './signals';

const quick = proxyActivities<Activities>({ startToCloseTimeout: '1 minute', retry: espCallRetry });
const { exportContacts } = proxyActivities<Activities>({
  startToCloseTimeout: '2 hours',
  // The activities heartbeat every 5 s, even while an ESP request is slow.
  heartbeatTimeout: '20 seconds',
  retry: espCallRetry,
});

export interface ConfigurationSyncInput {
  configurationId: string;
  /** YYYY-MM-DD: names the run's folder; a rerun of the same date reuses its exported chunks. */
  runDate: string;
  /**
   * Set for runs outside the schedule (e.g. `manual-080503-k3f2`): their files go to
   * runs/<id>/<runDate>_<runId>/, so they neither reuse nor overwrite the scheduled run's files.
   */
  runId?: string;
  mode: 'incremental' | 'full';
  /** Export and report what would be written; nothing is written to the ESP. */
  dryRun?: boolean;
  /** Redispatch: contacts already `updated` in this run's results are not sent again. */
  onlyPending?: boolean;
}

export interface ConfigurationSyncResult {
  configurationId: string;
  status: RunSummary['status'];
  exported: number;
  updated: number;
  rejected: number;
  reason?: string;
}

export interface SyncProgress {
  phase: 'starting' | 'maintenance' | 'export' | 'dispatch' | 'summary' | 'done';
  contactsExported: number;
  chunksDone: number;
  chunksTotal: number;
  updated: number;
  rejected: number;
}

export const progressQuery = defineQuery<SyncProgress>('progress');

/**
 * One configuration's run: maintenance -> export to the blob store -> dispatch (child workflow) ->
 * summary. Only ids, keys and counts pass through here; contacts and credentials never do.
 */
export async function configurationSyncWorkflow(
  input: ConfigurationSyncInput,
): Promise<ConfigurationSyncResult> {
  validate(input);
  const { configurationId, runDate } = input;
  // The run's folder in the blob store; activities know it as the run date.
  const run = runFolder(runDate, input.runId);
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

  const context = await quick.loadRunContext(configurationId);
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
    await quick.writeSummary(summary);
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
    await quick.markNeedsReauth({ configurationId, reason });
    return finish('needs_reauth', { reason, maintenance });
  };

  if (context.maintenance) {
    progress.phase = 'maintenance';
    const t = Date.now();
    try {
      maintenance = await quick.runMaintenance(configurationId);
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
    exported = await exportContacts({ configurationId, runDate: run, mode: input.mode });
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
          runDate: run,
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

function validate(input: ConfigurationSyncInput): void {
  const problems: string[] = [];
  if (!input || typeof input !== 'object') problems.push('input must be an object');
  else {
    if (typeof input.configurationId !== 'string' || !/^cfg_[a-z0-9]{8,32}$/.test(input.configurationId)) {
      problems.push('configurationId must look like cfg_ followed by 8-32 lowercase letters/digits');
    }
    if (typeof input.runDate !== 'string' || !/^\d{4}-\d{2}-\d{2}$/.test(input.runDate)) {
      problems.push('runDate must be YYYY-MM-DD');
    }
    if (
      input.runId !== undefined &&
      (typeof input.runId !== 'string' || !/^[a-z0-9-]{1,40}$/.test(input.runId))
    ) {
      problems.push('runId must be 1-40 lowercase letters, digits or -');
    }
    if (input.mode !== 'incremental' && input.mode !== 'full')
      problems.push('mode must be "incremental" or "full"');
  }
  if (problems.length)
    throw ApplicationFailure.nonRetryable(`invalid input: ${problems.join('; ')}`, 'InvalidInput');
}

export function runFolder(runDate: string, runId?: string): string {
  return runId ? `${runDate}_${runId}` : runDate;
}

/** Markdown for the Web UI's "current details". */
function describe(s: RunSummary): string {
  const kinds = Object.entries(s.rejectedByKind)
    .map(([k, n]) => `${k}: ${n}`)
    .join(', ');
  return [
    `**${s.status}**${s.dryRun ? ' (dry run)' : ''} · ${s.esp} · ${s.runDate} · ${s.mode}`,
    `exported ${s.contacts.exported} · already set ${s.contacts.alreadySet} · updated ${s.contacts.updated} · rejected ${s.contacts.rejected}${kinds ? ` (${kinds})` : ''}`,
    `chunks ${s.chunks} · ${Math.round(s.durationsMs.total / 1000)} s`,
    s.reason ? `reason: ${s.reason}` : '',
  ]
    .filter(Boolean)
    .join('\n\n');
}
