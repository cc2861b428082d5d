import {
  ActivityCancellationType,
  ApplicationFailure,
  CancellationScope,
  condition,
  ContinueAsNew,
  continueAsNew,
  getExternalWorkflowHandle,
  isCancellation,
  patched,
  proxyActivities,
  setCurrentDetails,
  setHandler,
  sleep,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { RunContext } from '../activities/configurations';
import type { RunSummary } from '../activities/summary';
import type { ChunkOutcome } from '../activities/update-chunk';
import type { MaintenanceReport } from '../processors/types';
import type { LockOwner } from '../runs/account-lock';
import type { ExportManifest } from '../runs/files';
import { runNotes } from '../runs/report';
import { searchAttributes } from '../temporal/constants';
import { failureTypes } from '../temporal/failure-types';
import {
  accountFreedSignal,
  accountWantedSignal,
  describe,
  progressQuery,
  runFolder,
  validate,
  type ConfigurationSyncInput,
  type ConfigurationSyncResult,
  type SyncProgress,
} from './configuration-run';
import { failureType, rootMessage } from './failures';
import { configurationSyncV1 } from './legacy/configuration-sync-v1';
import { chunkOptions, exportOptions, storeOptions } from './retry-policies';
import type { DispatchTotals } from './signals';

export {
  progressQuery,
  type ConfigurationSyncInput,
  type ConfigurationSyncResult,
  type SyncProgress,
} from './configuration-run';

/** Runs with this marker hold their ESP account while they write; older ones replay the legacy code. */
export const ONE_WRITER_PATCH = 'one-writer';
/** How long a run may take when its starter sets no deadline. */
export const DEFAULT_DEADLINE_MS = 20 * 60 * 60 * 1000;
/** Continue-as-new well before histories get long (and whenever Temporal suggests it). */
const MAX_HISTORY_EVENTS = 2_000;
/**
 * Runs with this marker update chunks while the export still lists: the export runs in parts, and
 * each part hands the run the chunk files it made durable. Older runs export first, then dispatch.
 */
export const EXPORT_PARTS_PATCH = 'dispatch-while-exporting';
/** History events a chunk takes while the export runs (its watch, its update, their tasks). */
const EVENTS_PER_CHUNK = 12;
/** Events kept free in a part's budget: the part itself, watches that saw nothing, the summary. */
const PART_RESERVE_EVENTS = 100;
/** The export's time limit runs this long past the run's deadline, which stops it first. */
const EXPORT_BACKSTOP_MS = 10 * 60_000;
/**
 * Runs with this marker hand the ESP account over: a waiting run asks the holder to tell it when
 * it gives the account back, and takes it at once; it looks again after MAX_WAIT_MS all the same
 * (a holder that stopped without giving it back). A run waiting for an older holder, which does
 * not tell, looks again after FIRST_WAIT_MS, doubling to MAX_WAIT_MS.
 */
export const HANDOFF_PATCH = 'account-handoff';
const FIRST_WAIT_MS = 1_000;
const MAX_WAIT_MS = 5 * 60_000;

// Activities stop before the run does: the account is given back only when none of them writes.
const stopTogether = { cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED };
const store = proxyActivities<Activities>(storeOptions);
const { updateChunk } = proxyActivities<Activities>({ ...chunkOptions, ...stopTogether });

/** What a run has done so far; carried across continue-as-new. */
export interface RunState {
  startedAt: number;
  /** Epoch ms: the run gives up (timed_out) then. */
  deadlineAt: number;
  context: RunContext;
  maintenance?: MaintenanceReport;
  manifest?: ExportManifest;
  durationsMs: { maintenance: number; export: number; dispatch: number };
  totals: DispatchTotals;
  nextChunk: number;
  /** Dispatching while exporting: the chunks the export's parts made durable so far. */
  exported?: { chunkCount: number; contacts: number };
  /** Workflow ids of the runs waiting for the account: told when it is given back. */
  waiters?: string[];
}

/** The account's hand-over between runs: who waits for it, and whether its holder said it is free. */
interface Handoff {
  /** HANDOFF_PATCH: runs older than it neither ask nor tell. */
  on: boolean;
  waiters: Set<string>;
  freed: boolean;
}

/** The run of a configuration that another run is writing: it writes nothing. */
class Busy extends Error {}
/** The run passed its deadline; its work was cancelled. */
class DeadlinePassed extends Error {}

/**
 * One configuration's run. It takes its ESP account's lock (one run per account at a time, so one
 * writer per configuration; a run of another configuration of the account waits its turn), claims
 * its folder, then maintenance and the export (one activity), then a sliding window of chunk
 * updates, each with its share of the account; then the summary, and the account is given back.
 * However it ends (completed, busy, skipped, needs_reauth, failed, timed_out, cancelled) it leaves
 * a summary and a status. Continues-as-new with its state when its history grows. Only ids, keys
 * and counts pass through here.
 */
export async function configurationSyncWorkflow(
  input: ConfigurationSyncInput & { state?: RunState },
): Promise<ConfigurationSyncResult> {
  if (!patched(ONE_WRITER_PATCH)) return configurationSyncV1(input);
  validate(input);
  const handoff: Handoff = {
    on: patched(HANDOFF_PATCH),
    waiters: new Set(input.state?.waiters),
    freed: false,
  };
  setHandler(accountWantedSignal, ({ workflowId }) => void handoff.waiters.add(workflowId));
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
  const startedAt = input.state?.startedAt ?? Date.now();
  const deadlineAt = input.state?.deadlineAt ?? startedAt + (input.deadlineMs ?? DEFAULT_DEADLINE_MS);
  let state = input.state;
  try {
    const outcome = await withDeadline(deadlineAt, async () => {
      if (!state) {
        const context = await start(input, owner, progress, handoff);
        state = {
          startedAt,
          deadlineAt,
          context,
          durationsMs: { maintenance: 0, export: 0, dispatch: 0 },
          totals: { chunksDone: 0, updated: 0, rejected: 0, rejectedByKind: {} },
          nextChunk: 1,
        };
        if (context.status !== 'active') return `configuration is ${context.status}`;
      }
      await write(input, owner, state, progress, handoff);
      return undefined;
    });
    return outcome === undefined
      ? await finish(input, owner, state, progress, handoff, 'completed')
      : await finish(input, owner, state, progress, handoff, 'skipped', outcome);
  } catch (err) {
    if (err instanceof ContinueAsNew) throw err;
    return ended(input, owner, state, progress, handoff, err);
  }
}

/**
 * Takes the ESP account and the run's folder; while another configuration's run holds the
 * account, waits. With `handoff`, it asks the holder to tell it when the account is free, then
 * looks once more (the holder may have given it back meanwhile) before waiting for the word.
 */
async function start(
  input: ConfigurationSyncInput,
  owner: LockOwner,
  progress: SyncProgress,
  handoff: Handoff,
): Promise<RunContext> {
  const ask = () =>
    store.startRun({
      configurationId: input.configurationId,
      folder: runFolder(input.runDate, input.runId),
      owner,
      mode: input.mode,
      dryRun: !!input.dryRun,
    });
  let wait = FIRST_WAIT_MS;
  /** The holder this run asked to tell it, and asked again after: it waits for the word. */
  let told: string | undefined;
  for (;;) {
    const answer = await ask();
    if (answer.state === 'ready') {
      upsertSearchAttributes([
        { key: searchAttributes.configurationId, value: input.configurationId },
        { key: searchAttributes.esp, value: answer.context.esp },
        { key: searchAttributes.status, value: 'running' },
      ]);
      return answer.context;
    }
    if (answer.state === 'busy') {
      throw new Busy(`another run is writing this configuration: ${answer.holder}; this run wrote nothing`);
    }
    progress.phase = 'starting';
    setCurrentDetails(`waiting for its ESP account, held by ${answer.holder}`);
    if (handoff.on && answer.holderTells && told !== answer.holderWorkflowId) {
      handoff.freed = false;
      const heard = await getExternalWorkflowHandle(answer.holderWorkflowId)
        .signal(accountWantedSignal, { workflowId: owner.workflowId })
        .then(
          () => true,
          () => false, // the holder has ended: its lock is given back, or expires
        );
      // Asks again at once: the holder may have given the account back before it heard.
      if (heard) {
        told = answer.holderWorkflowId;
        continue;
      }
    } else if (told === answer.holderWorkflowId) {
      await condition(() => handoff.freed, MAX_WAIT_MS);
      told = undefined;
      continue;
    }
    await sleep(wait);
    wait = Math.min(wait * 2, MAX_WAIT_MS);
  }
}

/** Maintenance and the export (once), then the chunk updates; continues-as-new when the history grows. */
async function write(
  input: ConfigurationSyncInput,
  owner: LockOwner,
  s: RunState,
  progress: SyncProgress,
  handoff: Handoff,
): Promise<void> {
  const { configurationId } = input;
  // A dry run dispatches nothing and a redispatch's export lists all before it knows its lines;
  // an account with one request in flight has no room for both sides at once.
  if (!s.manifest && !input.dryRun && !input.retryOf && s.context.concurrency >= 2) {
    if (patched(EXPORT_PARTS_PATCH)) return writeWhileExporting(input, owner, s, progress, handoff);
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
      runDate: s.context.folder,
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
  const inFlight = new Map<number, Promise<void>>();
  const run = (chunk: number) =>
    updateChunk({
      configurationId,
      runDate: s.context.folder,
      chunk,
      onlyPending: false,
      window,
      lock: owner,
    })
      .then((outcome: ChunkOutcome) => {
        add(s.totals, outcome);
        Object.assign(progress, {
          chunksDone: s.totals.chunksDone,
          updated: s.totals.updated,
          rejected: s.totals.rejected,
        });
      })
      .finally(() => inFlight.delete(chunk));
  const limit = input.maxHistoryEvents ?? MAX_HISTORY_EVENTS;
  const historyLong = () => workflowInfo().continueAsNewSuggested || workflowInfo().historyLength > limit;
  // When one chunk fails, the others are cancelled and waited for: nothing writes once the run ends.
  const chunks = new CancellationScope();
  try {
    while (s.nextChunk <= chunkCount || inFlight.size > 0) {
      while (s.nextChunk <= chunkCount && inFlight.size < window && !historyLong()) {
        const chunk = s.nextChunk++;
        inFlight.set(
          chunk,
          chunks.run(() => run(chunk)),
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
  if (s.nextChunk <= chunkCount) {
    // The account stays held: the lock names the workflow and its first run, not this history.
    await continueAsNew<typeof configurationSyncWorkflow>({
      ...input,
      state: { ...s, waiters: [...handoff.waiters] },
    });
  }
}

/**
 * The export in parts with the chunk updates beside it: each part returns the chunk files it made
 * durable, and those are dispatched while the next part lists on. The first part (maintenance,
 * the listing's start) has the account whole; later parts take the export's part of it
 * (exportBesideChunks), and the chunks in flight meanwhile share the rest, one slot left to the
 * export. A chunk takes 1/window of the writing, where window counts the chunks that can run now;
 * the shares of the chunks in flight never add up to more than the whole, so a chunk that would
 * overflow it waits for one to end. Continues-as-new between parts.
 */
async function writeWhileExporting(
  input: ConfigurationSyncInput,
  owner: LockOwner,
  s: RunState,
  progress: SyncProgress,
  handoff: Handoff,
): Promise<void> {
  const { configurationId } = input;
  const { exportPart } = proxyActivities<Activities>({
    ...exportOptions(Math.max(0, s.deadlineAt - Date.now()) + EXPORT_BACKSTOP_MS),
    ...stopTogether,
  });
  const { awaitExportedChunks } = proxyActivities<Activities>({
    ...storeOptions,
    heartbeatTimeout: '10 seconds',
    // It only reads: a cancelled run does not wait for it to stop.
    cancellationType: ActivityCancellationType.TRY_CANCEL,
  });
  const concurrency = s.context.concurrency;
  const besideWindow = Math.max(1, concurrency - 1);
  const chunksKnown = () => s.manifest?.chunkCount ?? s.exported?.chunkCount ?? 0;
  const inFlight = new Map<number, { done: Promise<void>; share: number }>();
  let part: Promise<void> | undefined;
  let watch: { done: Promise<void> } | undefined;
  let dispatchFrom: number | undefined;
  const limit = input.maxHistoryEvents ?? MAX_HISTORY_EVENTS;
  const historyLong = () => workflowInfo().continueAsNewSuggested || workflowInfo().historyLength > limit;
  const exported = (chunkCount: number, contacts: number) => {
    if (s.manifest || chunkCount <= chunksKnown()) return;
    s.exported = { chunkCount, contacts };
    progress.contactsExported = contacts;
    progress.chunksTotal = chunkCount;
  };

  const startPart = (scope: CancellationScope) => {
    const first = !s.exported;
    if (first && s.context.maintenance) progress.phase = 'maintenance';
    progress.exporting = true;
    const t = Date.now();
    part = scope
      .run(() =>
        exportPart({
          configurationId,
          runDate: s.context.folder,
          mode: input.mode,
          ...(input.replaceForeignValues ? { replaceForeignValues: true } : {}),
          maintain: first && s.context.maintenance,
          lock: owner,
          // As many chunks as the history has room for (each takes about a dozen events), so
          // the run can continue as new between parts.
          stopAfterChunks: Math.max(
            1,
            Math.floor((limit - workflowInfo().historyLength - PART_RESERVE_EVENTS) / EVENTS_PER_CHUNK),
          ),
          besideChunks: true,
        }),
      )
      .then((result) => {
        s.durationsMs.export += Date.now() - t;
        if (result.done) {
          const { done: _, maintenanceMs, maintenance, ...manifest } = result;
          s.manifest = manifest;
          s.maintenance = maintenance;
          s.durationsMs.maintenance = maintenanceMs ?? 0;
          s.durationsMs.export -= maintenanceMs ?? 0;
          delete progress.exporting;
          progress.contactsExported = manifest.contacts;
          progress.chunksTotal = manifest.chunkCount;
        } else {
          exported(result.chunkCount, result.contacts);
        }
        if (progress.phase !== 'dispatch') progress.phase = 'export';
      })
      .finally(() => (part = undefined));
  };

  // While a part lists, the chunks it makes final are picked up as they land. A watch ends by
  // itself soon after its part (the part's last chunk, or the export's end, is in the file).
  const startWatch = (scope: CancellationScope) => {
    const done = scope
      .run(() => awaitExportedChunks({ configurationId, runDate: s.context.folder, after: chunksKnown() }))
      .then(({ chunkCount, contacts }) => exported(chunkCount, contacts))
      .finally(() => (watch = undefined));
    watch = { done };
  };

  const startChunk = (scope: CancellationScope, chunk: number, besideExport: boolean, window: number) => {
    progress.phase = 'dispatch';
    dispatchFrom ??= Date.now();
    const done = scope
      .run(() =>
        updateChunk({
          configurationId,
          runDate: s.context.folder,
          chunk,
          onlyPending: false,
          window,
          ...(besideExport ? { besideExport: true } : {}),
          lock: owner,
        }),
      )
      .then((outcome: ChunkOutcome) => {
        add(s.totals, outcome);
        Object.assign(progress, {
          chunksDone: s.totals.chunksDone,
          updated: s.totals.updated,
          rejected: s.totals.rejected,
        });
      })
      .finally(() => inFlight.delete(chunk));
    inFlight.set(chunk, { done, share: 1 / window });
  };

  // When a part or a chunk fails, the rest is cancelled and waited for: nothing writes once the run ends.
  const work = new CancellationScope();
  const dispatchBefore = s.durationsMs.dispatch;
  try {
    for (;;) {
      if (!s.manifest && !part && !historyLong()) startPart(work);
      // A part's chunks are within its history budget: they go on while it lists.
      while (s.nextChunk <= chunksKnown() && (part || !historyLong())) {
        // A chunk's share of the writing is 1/window: as many as can run now share it (fewer
        // chunks take more each), up to besideWindow beside the export and concurrency after it.
        const besideExport = !s.manifest;
        const waiting = chunksKnown() - s.nextChunk + 1;
        const window = Math.max(
          1,
          Math.min(besideExport ? besideWindow : concurrency, waiting + inFlight.size),
        );
        const used = [...inFlight.values()].reduce((sum, c) => sum + c.share, 0);
        if (used + 1 / window > 1 + 1e-9) break;
        startChunk(work, s.nextChunk++, besideExport, window);
      }
      if (part && !watch && s.nextChunk > chunksKnown()) startWatch(work);
      const running = [...inFlight.values()].map((c) => c.done);
      if (part) running.push(part);
      if (watch) running.push(watch.done);
      if (running.length === 0) break;
      await Promise.race(running);
    }
  } catch (err) {
    work.cancel();
    await Promise.allSettled([...[...inFlight.values()].map((c) => c.done), part, watch?.done]);
    throw err;
  }
  if (dispatchFrom !== undefined) s.durationsMs.dispatch = dispatchBefore + (Date.now() - dispatchFrom);
  if (!s.manifest || s.nextChunk <= s.manifest.chunkCount) {
    // The account stays held: the lock names the workflow and its first run, not this history.
    await continueAsNew<typeof configurationSyncWorkflow>({
      ...input,
      state: { ...s, waiters: [...handoff.waiters] },
    });
  }
}

/** Runs `fn`; past the deadline, cancels it, waits for it to stop, and throws DeadlinePassed. */
async function withDeadline<T>(deadlineAt: number, fn: () => Promise<T>): Promise<T> {
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
const DEADLINE = Symbol('deadline');

/** Every way a run can end but completing: recorded, and (for real failures) rethrown. */
async function ended(
  input: ConfigurationSyncInput,
  owner: LockOwner,
  state: RunState | undefined,
  progress: SyncProgress,
  handoff: Handoff,
  err: unknown,
): Promise<ConfigurationSyncResult> {
  const end = (status: RunSummary['status'], reason: string) =>
    finish(input, owner, state, progress, handoff, status, reason);
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
async function finish(
  input: ConfigurationSyncInput,
  owner: LockOwner,
  state: RunState | undefined,
  progress: SyncProgress,
  handoff: Handoff,
  status: RunSummary['status'],
  reason?: string,
): Promise<ConfigurationSyncResult> {
  progress.phase = 'summary';
  const startedAt = state?.startedAt ?? Date.now();
  const manifest = state?.manifest;
  const summary: RunSummary = {
    configurationId: input.configurationId,
    esp: state?.context.esp ?? '',
    runDate: input.runDate,
    run: state?.context.folder ?? runFolder(input.runDate, input.runId),
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
    await store.recordRun(summary, status === 'busy' ? { files: false } : { lock: owner });
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

function add(totals: DispatchTotals, outcome: ChunkOutcome): void {
  totals.chunksDone++;
  totals.updated += outcome.updated;
  totals.rejected += outcome.rejected;
  if (outcome.replaced) totals.replaced = (totals.replaced ?? 0) + outcome.replaced;
  for (const [kind, n] of Object.entries(outcome.rejectedByKind)) {
    totals.rejectedByKind[kind] = (totals.rejectedByKind[kind] ?? 0) + n;
  }
}
