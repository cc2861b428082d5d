// A configuration's run, in steps: take the account (sync/take-account.ts), write (sync/write.ts,
// sync/write-while-exporting.ts), and end with a summary however it ends (sync/end.ts).
import { ContinueAsNew, setHandler, workflowInfo } from '@temporalio/workflow';
import type { LockOwner } from '../runs/account-lock';
import {
  accountFreedSignal,
  accountWantedSignal,
  progressQuery,
  validate,
  withCurrentNames,
  type ConfigurationSyncResult,
  type SyncProgress,
  type WithEarlierNames,
} from './configuration-run';
import { configurationSyncV1 } from './legacy/configuration-sync-v1';
import { ended, finish, withDeadline } from './sync/end';
import { HANDOFF_PATCH, ONE_WRITER_PATCH, patchesOfRun } from './sync/patches';
import type { Handoff, SyncInput, SyncRun } from './sync/state';
import { takeAccount } from './sync/take-account';
import { write } from './sync/write';

export {
  progressQuery,
  type ConfigurationSyncInput,
  type ConfigurationSyncResult,
  type SyncProgress,
} from './configuration-run';

/** How long a run may take when its starter sets no deadline. */
export const DEFAULT_DEADLINE_MS = 20 * 60 * 60 * 1000;

/**
 * One configuration's run. It takes its ESP account's lock (one run per account at a time, so one
 * writer per configuration; a run of another configuration of the account waits its turn, and
 * maintains and lists on what the holder lends it as the holder's last chunks end), claims its
 * folder, then maintenance and the export (one activity), then a sliding window of chunk
 * updates, each with its share of the account; then the summary, and the account is given back.
 * However it ends (completed, busy, skipped, needs_reauth, failed, timed_out, cancelled) it leaves
 * a summary and a status. Continues-as-new with its state when its history grows. Only ids, keys
 * and counts pass through here.
 */
export async function configurationSyncWorkflow(
  given: SyncInput | WithEarlierNames<SyncInput>,
): Promise<ConfigurationSyncResult> {
  const input = withCurrentNames(given);
  const patched = patchesOfRun();
  if (!patched(ONE_WRITER_PATCH)) return configurationSyncV1(input);
  validate(input);
  const handoff: Handoff = {
    on: patched(HANDOFF_PATCH),
    waiters: new Set(input.state?.waiters),
    guests: new Set(input.state?.guests),
    freed: false,
  };
  setHandler(accountWantedSignal, ({ workflowId, guest }) => {
    handoff.waiters.add(workflowId);
    if (guest === true) handoff.guests.add(workflowId);
  });
  setHandler(accountFreedSignal, () => void (handoff.freed = true));
  const owner: LockOwner = {
    configurationId: input.configurationId,
    workflowId: workflowInfo().workflowId,
    runId: workflowInfo().firstExecutionRunId,
    dryRun: !!input.dryRun,
    ...(handoff.on ? { tellsWaiters: true } : {}),
  };
  const progress: SyncProgress = {
    phase: 'starting',
    contactsExported: input.state?.manifest?.contacts ?? 0,
    chunksDone: input.state?.totals.chunksDone ?? 0,
    chunksTotal: input.state?.manifest?.chunkCount ?? 0,
    updated: input.state?.totals.updated ?? 0,
    rejected: input.state?.totals.rejected ?? 0,
  };
  setHandler(progressQuery, () => progress);
  const run: SyncRun = { input, owner, progress, handoff, patched };
  const startedAt = input.state?.startedAt ?? Date.now();
  const deadlineAt = input.state?.deadlineAt ?? startedAt + (input.deadlineMs ?? DEFAULT_DEADLINE_MS);
  let state = input.state;
  try {
    const outcome = await withDeadline(deadlineAt, async () => {
      if (!state) {
        const { context, guestOf } = await takeAccount(run);
        state = {
          startedAt,
          deadlineAt,
          context,
          durationsMs: { maintenance: 0, export: 0, dispatch: 0 },
          totals: { chunksDone: 0, updated: 0, rejected: 0, rejectedByKind: {} },
          nextChunk: 1,
          ...(guestOf ? { guestOf } : {}),
        };
        if (context.status !== 'active') return `configuration is ${context.status}`;
      }
      await write(run, state);
      return undefined;
    });
    return outcome === undefined
      ? await finish(run, state, 'completed')
      : await finish(run, state, 'skipped', outcome);
  } catch (err) {
    if (err instanceof ContinueAsNew) throw err;
    return ended(run, state, err);
  }
}
