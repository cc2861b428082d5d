// Dispatch while exporting: the export in parts, each chunk updated as soon as it is durable.
import {
  ActivityCancellationType,
  CancellationScope,
  getExternalWorkflowHandle,
  proxyActivities,
} from '@temporalio/workflow';
import type { Activities } from '../../activities';
import { accountFreedSignal, runFolderFields } from '../configuration-run';
import { exportOptions, storeOptions } from '../retry-policies';
import {
  continueRun,
  eventsLeft,
  historyLong,
  stopTogether,
  updateOneChunk,
  type RunState,
  type SyncRun,
} from './state';
import { ownAccount } from './take-account';
import {
  ACCOUNT_GUEST_PATCH,
  AFTER_EXPORT_BY_CHUNK_COUNT_PATCH,
  EXPORT_BESIDE_PATCH,
  FULL_WINDOW_AFTER_EXPORT_PATCH,
  WRITING_CHUNKS_BESIDE_PATCH,
} from './patches';

/** History events a chunk takes while the export runs (its watch, its update, their tasks). */
const EVENTS_PER_CHUNK = 12;
/** Events kept free in a part's budget: the part itself, watches that saw nothing, the summary. */
const PART_RESERVE_EVENTS = 100;
/** The export's time limit runs this long past the run's deadline, which stops it first. */
export const EXPORT_BACKSTOP_MS = 10 * 60_000;

/**
 * The export in parts with the chunk updates beside it: each part returns the chunk files it made
 * durable, and those are dispatched while the next part lists on. The first part (maintenance,
 * the listing's start) has the account whole; later parts take the export's part of it
 * (exportBesideChunks), and the chunks in flight meanwhile share the rest, one slot left to the
 * export. A chunk takes 1/window of the writing, where window counts the chunks that can run now;
 * the shares of the chunks in flight never add up to more than the whole, so a chunk that would
 * overflow it waits for one to end. Continues-as-new between parts.
 */
export async function writeWhileExporting(run: SyncRun, s: RunState): Promise<void> {
  const { input, owner, progress, patched, handoff } = run;
  const { configurationId } = input;
  const { exportPart } = proxyActivities<Activities>({
    ...exportOptions(Math.max(0, s.deadlineAt - Date.now()) + EXPORT_BACKSTOP_MS),
    ...stopTogether,
  });
  const { shareChunkWindows, lendAccount } = proxyActivities<Activities>(storeOptions);
  const { awaitExportedChunks } = proxyActivities<Activities>({
    ...storeOptions,
    heartbeatTimeout: '10 seconds',
    // It only reads: a cancelled run does not wait for it to stop.
    cancellationType: ActivityCancellationType.TRY_CANCEL,
  });
  const concurrency = s.context.concurrency;
  const fullWindowAfter = patched(FULL_WINDOW_AFTER_EXPORT_PATCH);
  const afterByChunkCount = fullWindowAfter && patched(AFTER_EXPORT_BY_CHUNK_COUNT_PATCH);
  const byContext =
    fullWindowAfter &&
    ((s.context.exportSlots ?? 1) > 1 || !!s.context.wholeWritingBeside) &&
    patched(EXPORT_BESIDE_PATCH);
  const exportSlots = byContext ? (s.context.exportSlots ?? 1) : 1;
  // The export writes nothing: where writing has a limit of its own, the chunks beside it may share
  // it all, and as many run after it (shares of one size: a chunk that ends leaves room for one).
  const writingLimited = byContext && !!s.context.wholeWritingBeside;
  const most = Math.max(1, concurrency - exportSlots);
  // As many as the run's context says (two, where they may: share-sizes.ts, writingChunksBeside).
  const given = s.context.chunksBeside;
  const besideWindow =
    writingLimited &&
    Number.isInteger(given) &&
    given! >= 1 &&
    given! <= most &&
    patched(WRITING_CHUNKS_BESIDE_PATCH)
      ? given!
      : most;
  const runWindow = writingLimited ? besideWindow : concurrency;
  const chunksKnown = () => s.manifest?.chunkCount ?? s.exported?.chunkCount ?? 0;
  // A chunk's share while the export runs, and once it has ended.
  const inFlight = new Map<
    number,
    { done: Promise<void>; share: number; after: number; byChunkCount?: boolean; keepsOneForGuest?: boolean }
  >();
  let part: Promise<void> | undefined;
  let watch: { done: Promise<void> } | undefined;
  let dispatchFrom: number | undefined;
  /** The export has just ended in this history: the next chunk started takes its place. */
  let exportPlaceFree = false;
  /**
   * In workflow time, the latest an ended chunk's last request (or the export's) may have started:
   * its end as the run learned of it, less how long before ending it had sent nothing. A chunk
   * that takes over a share counts its first interval from then (quietMs), not from its start.
   */
  let lastRequestAt: number | undefined;
  const requestsEnded = (quietMs: number | undefined) => {
    const at = Date.now() - Math.max(0, quietMs ?? 0);
    lastRequestAt = Math.max(lastRequestAt ?? at, at);
  };
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
          ...runFolderFields(s.context.folder),
          mode: input.mode,
          ...(input.replaceForeignValues ? { replaceForeignValues: true } : {}),
          maintain: first && s.context.maintenance,
          lock: owner,
          // As many chunks as the history has room for (each takes about a dozen events), so
          // the run can continue as new between parts.
          stopAfterChunks: Math.max(
            1,
            Math.floor((eventsLeft(input) - PART_RESERVE_EVENTS) / EVENTS_PER_CHUNK),
          ),
          besideChunks: true,
          // Each chunk beside it takes no more than 1/after of any limit (startChunk's `after`).
          ...(fullWindowAfter
            ? { chunksBeside: besideWindow, chunksAfter: writingLimited ? besideWindow : concurrency }
            : {}),
          ...(exportSlots > 1 ? { exportSlots } : {}),
        }),
      )
      .then((result) => {
        s.durationsMs.export += Date.now() - t;
        if (result.done) {
          const { done: _, maintenanceMs, maintenance, quietMs, ...manifest } = result;
          s.manifest = manifest;
          s.maintenance = maintenance;
          s.durationsMs.maintenance = maintenanceMs ?? 0;
          s.durationsMs.export -= maintenanceMs ?? 0;
          // The chunks beside it take 1/(chunk files made) once they read that it has ended (one
          // more kept for the run waiting for the account, when one was then).
          const window = (kept?: boolean) =>
            Math.max(1, Math.min(runWindow, manifest.chunkCount + (kept ? 1 : 0)));
          for (const c of inFlight.values())
            if (c.byChunkCount) c.after = Math.max(c.after, 1 / window(c.keepsOneForGuest));
          delete progress.exporting;
          // Where the chunks beside it share the whole writing, the export leaves no place free.
          exportPlaceFree = fullWindowAfter && !writingLimited;
          // From its last request (the last page), not its end: what it lends was unused since.
          requestsEnded(quietMs);
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
      .run(() =>
        awaitExportedChunks({ configurationId, ...runFolderFields(s.context.folder), after: chunksKnown() }),
      )
      .then(({ chunkCount, contacts }) => exported(chunkCount, contacts))
      .finally(() => (watch = undefined));
    watch = { done };
  };

  const startChunk = (scope: CancellationScope, chunk: number, besideExport: boolean, window: number) => {
    progress.phase = 'dispatch';
    dispatchFrom ??= Date.now();
    // Beside the export in a full window, a chunk takes 1/concurrency once the export has ended:
    // the export's slots then go to more chunks. Not where writing is limited apart: the chunks
    // beside the export hold all of it, and keep 1/window.
    const after =
      besideExport && fullWindowAfter && window >= besideWindow && !writingLimited ? concurrency : window;
    const byChunkCount = after !== window && afterByChunkCount;
    // A run that may be this one's guest waits: when the export ends, the chunks beside it leave
    // it the share of one more, which it maintains and lists on while they write (lendOut). Their
    // shares, grown all at once, would otherwise end all at once, and the guest start after.
    const keepsOneForGuest = byChunkCount && mayLend();
    const inExportPlace = !besideExport && exportPlaceFree;
    if (inExportPlace) exportPlaceFree = false;
    // Beside the export before any of the run's chunks has ended, in any of its histories: the
    // chunk's share was the export's, which lowered its pacing before it said the file was final.
    const shareOfExport = besideExport && lastRequestAt === undefined && s.totals.chunksDone === 0;
    const done = scope
      .run(() =>
        updateOneChunk(run, s, chunk, {
          window,
          besideExport,
          ...(after !== window ? { afterExportWindow: after } : {}),
          ...(byChunkCount ? { afterExportByChunkCount: true } : {}),
          ...(keepsOneForGuest ? { afterExportKeepsOneForGuest: true } : {}),
          ...(fullWindowAfter ? { followWindows: true } : {}),
          ...(inExportPlace ? { inExportPlace } : {}),
          ...(shareOfExport ? { shareOfExport } : {}),
          ...(besideExport && exportSlots > 1 ? { exportSlots } : {}),
          ...(lastRequestAt !== undefined ? { quietMs: Math.max(0, Date.now() - lastRequestAt) } : {}),
        }),
      )
      .then(requestsEnded)
      .finally(() => inFlight.delete(chunk));
    inFlight.set(chunk, {
      done,
      share: 1 / window,
      after: 1 / after,
      ...(byChunkCount ? { byChunkCount } : {}),
      ...(keepsOneForGuest ? { keepsOneForGuest } : {}),
    });
  };

  // Once the export has ended and every chunk is in flight, what a chunk that ends held goes to
  // the others: each takes 1/(chunks in flight), told through the chunk windows file. Shares only
  // grow, so a chunk that reads the file late only writes slower meanwhile. One write at a time;
  // the loop looks again when it is done. Losing one only costs speed. When a run waits for the
  // account, what ends is lent to that run instead (lendOut).
  let sharing: Promise<unknown> | undefined;
  const sharingScope = new CancellationScope();
  const shareOut = () => {
    if (!fullWindowAfter || sharing || !s.manifest || s.nextChunk <= s.manifest.chunkCount) return;
    if (lendOut()) return;
    const chunks = [...inFlight.values()];
    const window = Math.min(runWindow, chunks.length);
    // Only when every chunk's share grows (never when one holds more than 1/window already).
    if (chunks.length === 0 || chunks.some((c) => c.after > 1 / window + 1e-9)) return;
    if (chunks.every((c) => c.after > 1 / window - 1e-9)) return;
    for (const c of chunks) c.after = 1 / window;
    const windows = Object.fromEntries([...inFlight.keys()].map((chunk) => [String(chunk), window]));
    sharing = sharingScope
      .run(() => shareChunkWindows({ configurationId, ...runFolderFields(s.context.folder), windows }))
      .catch(() => undefined)
      .finally(() => (sharing = undefined));
  };

  // The first run that waits for the account and may be a guest is lent what this run's chunks
  // do not use once the export has ended and every chunk is in flight, and each chunk's share as
  // it ends (account-lock.ts): it maintains and lists on that (take-account.ts), and holds the
  // account once this run gives it back. The chunks' shares no longer grow. Where chunks keep it
  // a share when the export ends (keepsOneForGuest), it is told before, so that it is ready.
  let lending: 'refused' | { to: string; tail: boolean } | undefined;
  const mayLend = () => handoff.guests.size > 0 && !!s.context.accountLock && patched(ACCOUNT_GUEST_PATCH);
  const lend = (tail?: number[]) => {
    const guest = lending === undefined ? [...handoff.guests][0] : lending !== 'refused' && lending.to;
    const lockKey = s.context.accountLock;
    if (!guest || !lockKey) return;
    const held = [...inFlight.values()].map((c) => c.after);
    const fraction = tail ? Math.max(0, 1 - held.reduce((sum, f) => sum + f, 0)) : 0;
    const share = {
      fraction,
      slots: Math.floor(concurrency * fraction + 1e-9),
      // What is free came from the export and the chunks that ended: none sent since.
      ...(tail && lastRequestAt !== undefined ? { quietSince: lastRequestAt } : {}),
    };
    const told = lending !== undefined;
    lending = { to: guest, tail: !!tail };
    sharing = sharingScope
      .run(() =>
        lendAccount({
          lockKey,
          lock: owner,
          guest,
          share,
          // The activity lends the whole requests the chunks leave (their pacers floor their shares).
          ...(tail ? { tail, esp: s.context.esp, held } : {}),
        }),
      )
      .then(async (taken) => {
        if (!taken) return void (lending = 'refused');
        if (!told) await getExternalWorkflowHandle(guest).signal(accountFreedSignal);
      })
      // Lent or not, the chunks' shares stay as they are: the guest may hold what they free.
      .catch(() => undefined)
      .finally(() => (sharing = undefined));
  };
  /** Lends at the tail; false when no run is lent to (the chunks' shares grow instead). */
  const lendOut = (): boolean => {
    if (lending === 'refused') return false;
    if (lending?.tail) return true;
    if (lending === undefined && !mayLend()) return false;
    lend([...inFlight.keys()]);
    return true;
  };
  const invite = () => {
    if (lending !== undefined || sharing || ![...inFlight.values()].some((c) => c.keepsOneForGuest)) return;
    lend();
  };

  // A guest of the account's holder starts no chunk until the account is its own.
  let owning: Promise<void> | undefined;
  const awaitOwning = (scope: CancellationScope) => {
    const holder = s.guestOf;
    if (!holder || owning) return;
    owning = scope
      .run(() => ownAccount(run, holder))
      .then(() => void delete s.guestOf)
      .finally(() => (owning = undefined));
  };

  // When a part or a chunk fails, the rest is cancelled and waited for: nothing writes once the run ends.
  const work = new CancellationScope();
  const dispatchBefore = s.durationsMs.dispatch;
  try {
    for (;;) {
      if (!s.manifest && !part && !historyLong(input)) startPart(work);
      awaitOwning(work);
      // A part's chunks are within its history budget: they go on while it lists.
      while (!s.guestOf && s.nextChunk <= chunksKnown() && (part || !historyLong(input))) {
        // A chunk's share of the writing is 1/window: as many as can run now share it (fewer
        // chunks take more each), up to besideWindow beside the export and concurrency after it.
        // Beside the export (fullWindowAfter), always besideWindow: the export makes more chunks
        // than are known yet, and a chunk that took all would keep the next ones waiting.
        const besideExport = !s.manifest;
        const waiting = chunksKnown() - s.nextChunk + 1;
        const window =
          besideExport && fullWindowAfter
            ? besideWindow
            : Math.max(1, Math.min(besideExport ? besideWindow : runWindow, waiting + inFlight.size));
        const used = [...inFlight.values()].reduce((sum, c) => sum + (s.manifest ? c.after : c.share), 0);
        if (used + 1 / window > 1 + 1e-9) break;
        startChunk(work, s.nextChunk++, besideExport, window);
      }
      // Only a chunk started as the export ends takes its place; a later one takes an ended chunk's.
      exportPlaceFree = false;
      if (part && !watch && s.nextChunk > chunksKnown()) startWatch(work);
      invite();
      shareOut();
      const running = [...inFlight.values()].map((c) => c.done);
      if (part) running.push(part);
      if (watch) running.push(watch.done);
      if (owning) running.push(owning);
      if (running.length === 0) break;
      await Promise.race(sharing ? [...running, sharing] : running);
    }
  } catch (err) {
    work.cancel();
    await Promise.allSettled([...[...inFlight.values()].map((c) => c.done), part, watch?.done, owning]);
    throw err;
  } finally {
    // The last chunks have ended: a share for them written now would be read by none.
    if (sharing) {
      sharingScope.cancel();
      await sharing;
    }
  }
  if (dispatchFrom !== undefined) s.durationsMs.dispatch = dispatchBefore + (Date.now() - dispatchFrom);
  if (!s.manifest || s.nextChunk <= s.manifest.chunkCount) await continueRun(run, s);
}
