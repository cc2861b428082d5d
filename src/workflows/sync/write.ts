// A run's work once it holds its account: the export, then the chunk updates (or both at once).
import { CancellationScope, proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../../activities';
import { runFolderFields } from '../configuration-run';
import { exportOptions } from '../retry-policies';
import { continueRun, historyLong, stopTogether, updateOneChunk, type RunState, type SyncRun } from './state';
import { EXPORT_PARTS_PATCH } from './patches';
import { ownAccount } from './take-account';
import { EXPORT_BACKSTOP_MS, writeWhileExporting } from './write-while-exporting';

/** Maintenance and the export (once), then the chunk updates; continues-as-new when the history grows. */
export async function write(run: SyncRun, s: RunState): Promise<void> {
  const { input, owner, progress } = run;
  const { configurationId } = input;
  // A dry run dispatches nothing and a redispatch's export lists all before it knows its lines;
  // an account with one request in flight has no room for both sides at once.
  if (!s.manifest && !input.dryRun && !input.retryOf && s.context.concurrency >= 2) {
    if (run.patched(EXPORT_PARTS_PATCH)) return writeWhileExporting(run, s);
  }
  // Only a run that exports beside its chunks is lent some of the account; any other waits for it.
  if (s.guestOf) {
    await ownAccount(run, s.guestOf);
    delete s.guestOf;
  }
  if (!s.manifest) {
    progress.phase = s.context.maintenance ? 'maintenance' : 'export';
    // The run's deadline stops the export (and waits for it); its own time limit is a backstop.
    const { exportContacts } = proxyActivities<Activities>({
      ...exportOptions(Math.max(0, s.deadlineAt - Date.now()) + EXPORT_BACKSTOP_MS),
      ...stopTogether,
    });
    const t = Date.now();
    const { maintenanceMs, maintenance, ...manifest } = await exportContacts({
      configurationId,
      ...runFolderFields(s.context.folder),
      mode: input.mode,
      retryOf: input.retryOf,
      dryRun: !!input.dryRun,
      ...(input.replaceForeignValues ? { replaceForeignValues: true } : {}),
      maintain: s.context.maintenance,
      lock: owner,
    });
    s.manifest = manifest;
    s.maintenance = maintenance;
    s.durationsMs.maintenance = maintenanceMs ?? 0;
    s.durationsMs.export = Date.now() - t - (maintenanceMs ?? 0);
    progress.contactsExported = manifest.contacts;
    progress.chunksTotal = manifest.chunkCount;
  }
  if (input.dryRun) return;

  progress.phase = 'dispatch';
  const { chunkCount } = s.manifest;
  // Each chunk in flight takes 1/window of the account; fewer chunks than the ESP's concurrency take more.
  const window = Math.max(1, Math.min(s.context.concurrency, chunkCount));
  const dispatchStarted = Date.now() - s.durationsMs.dispatch;
  const inFlight = new Map<number, Promise<unknown>>();
  // When one chunk fails, the others are cancelled and waited for: nothing writes once the run ends.
  const chunks = new CancellationScope();
  try {
    while (s.nextChunk <= chunkCount || inFlight.size > 0) {
      while (s.nextChunk <= chunkCount && inFlight.size < window && !historyLong(input)) {
        const chunk = s.nextChunk++;
        inFlight.set(
          chunk,
          chunks.run(() => updateOneChunk(run, s, chunk, { window }).finally(() => inFlight.delete(chunk))),
        );
      }
      if (inFlight.size === 0) break;
      await Promise.race(inFlight.values());
    }
  } catch (err) {
    chunks.cancel();
    await Promise.allSettled(inFlight.values());
    throw err;
  }
  s.durationsMs.dispatch = Date.now() - dispatchStarted;
  if (s.nextChunk <= chunkCount) await continueRun(run, s);
}
