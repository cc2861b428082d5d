import { ZodError } from 'zod';
import type { ActivityDeps } from './deps';
import { loadTarget } from './deps';
import { changeWithAlert, sendOutbox } from '../alerts';
import type { ListMode } from '../processors/types';
import { runFiles } from '../runs/files';
import { ConflictError, CorruptDataError, NotFoundError, type Configuration } from '../storage';
import { accountLockKey, AccountLocks, type GuestShare, type LockOwner } from '../runs/account-lock';
import { mapFailures } from './failures';
import { chunksAtOnce, exportSlots, writingChunksBeside } from './share-sizes';

export interface RunContext {
  esp: string;
  status: 'active' | 'needs_reauth' | 'disabled';
  maintenance: boolean;
  /** From the ESP's descriptor: how many chunk updates to keep in flight (chunksAtOnce). */
  concurrency: number;
  /**
   * Requests the export keeps in flight beside chunk updates when more than one (share-sizes.ts,
   * exportSlots): the run keeps that many fewer chunks beside it. Absent in runs of earlier versions.
   */
  exportSlots?: number;
  /**
   * The chunks beside the export share the whole of the account's writing limit (share-sizes.ts,
   * wholeWritingBeside): none starts in the export's place when it ends, and the run keeps as
   * many in flight to its end. Absent in runs of earlier versions.
   */
  wholeWritingBeside?: boolean;
  /**
   * With wholeWritingBeside: how many chunks run beside the export, and after it, each with that
   * part of the writing (share-sizes.ts, writingChunksBeside). Absent in runs of earlier versions,
   * which keep concurrency - exportSlots.
   */
  chunksBeside?: number;
  /**
   * The account lock's key, which the run's last step gives back without reading the configuration
   * again (the account the run took, even if the configuration moved to another meanwhile). Absent
   * in runs of earlier versions.
   */
  accountLock?: string;
  /** The run's folder: the one asked for, or one of its own when another run holds that one. */
  folder: string;
}

export interface StartRunInput {
  configurationId: string;
  folder: string;
  /** The run, as its account lock names it. */
  owner: LockOwner;
  mode: ListMode;
  dryRun: boolean;
  /**
   * The run asks an expired lock's holder whether it has ended before it takes the lock
   * (take-account.ts): runs of this version. Runs of earlier versions, whose workflow code may run
   * on a worker of the version before (startRun was an activity then, run on any worker), take an
   * expired lock as they did.
   */
  asksHolder?: boolean;
  /** The run holding the account's expired lock, which this run saw end: the lock is taken. */
  holderEnded?: Pick<LockOwner, 'workflowId' | 'runId'>;
  /**
   * The run may be the holder's guest: it maintains and lists on what the holder lends it while its
   * last chunks end (account-lock.ts, `lend`). Runs of earlier versions never are.
   */
  mayBeGuest?: boolean;
}

/** Who holds the ESP account another run asked for. */
export interface AccountHolder {
  holder: string;
  holderWorkflowId: string;
  holderTells: boolean;
  /**
   * The holder's lock has expired: its first run id, so the run can ask again naming it ended
   * once it has seen it end (take-account.ts). A holder still running keeps the account.
   */
  holderExpired?: { runId: string };
}

/**
 * ready: the run holds its ESP account and its folder. busy: another run is writing this
 * configuration (this one does nothing). waiting: another run holds the account (another
 * configuration of it, or a dry run): try again later. guest: so too, but the holder lends the
 * run `share` of the account as its last chunks end: the run holds its folder, and may maintain
 * and list on that share (not write) until the account is its own.
 */
export type StartRunAnswer =
  | { state: 'ready'; context: RunContext }
  | ({ state: 'busy' | 'waiting' } & AccountHolder)
  | ({ state: 'guest'; context: RunContext; share: GuestShare } & AccountHolder);

/** One listed configuration, or why its document cannot be read. */
export interface ListedConfiguration {
  configurationId: string;
  esp?: string;
  status?: Configuration['status'];
  unreadable?: string;
}

/** Reads of configuration documents in flight at once while listing a page. */
const READS_AT_ONCE = 32;
const UNREADABLE_MARKERS = 'alerts/unreadable/';

export function createConfigurationActivities(deps: ActivityDeps) {
  const { configurations, blobs } = deps.stores;
  return {
    /** Legacy daily runs: the active configurations. Unreadable documents are left out (and logged). */
    async listActiveConfigurations(): Promise<Array<{ configurationId: string; esp: string }>> {
      const active: Array<{ configurationId: string; esp: string }> = [];
      let after: string | undefined;
      do {
        const page = await listPage(after, 1_000);
        for (const e of page.entries)
          if (e.status === 'active') active.push({ configurationId: e.configurationId, esp: e.esp! });
        after = page.nextCursor;
      } while (after);
      return active;
    },

    /**
     * One page of configurations in id order, after `after`. A document that cannot be read is
     * listed as unreadable (with the reason) and alerted once; the others are unaffected. Alerts a
     * crash left in a document's outbox are sent.
     */
    async listConfigurationsPage(input: {
      after?: string;
      limit: number;
    }): Promise<{ entries: ListedConfiguration[]; nextCursor?: string }> {
      return mapFailures(() => listPage(input.after, input.limit));
    },

    /** Legacy runs: what a run needs to know of its configuration. */
    async loadRunContext(configurationId: string): Promise<Omit<RunContext, 'folder'>> {
      return mapFailures(async () => {
        const { configuration, processor } = await loadTarget(deps, configurationId);
        return {
          esp: configuration.esp,
          status: configuration.status,
          maintenance: configuration.maintenance,
          concurrency: chunksAtOnce(processor.limits()),
        };
      });
    },

    /**
     * Takes the run's ESP account (its lock: one run per account at a time, so one writer per
     * configuration) and its folder, claimed with a conditional write (runs/<id>/<folder>/run.json):
     * a folder belongs to one run, so no run reuses or overwrites another's files. A run that finds
     * its folder taken gets `<date>_run-<8 characters of its Temporal run id>`. Says who holds the
     * account when it is taken.
     */
    async startRun(input: StartRunInput): Promise<StartRunAnswer> {
      return mapFailures(async () => {
        const { configuration, processor } = await loadTarget(deps, input.configurationId);
        const accountLock = accountLockKey(configuration.esp, configuration.espAccountId);
        // What the folder holds is read beside the lock: a run that finds the account held has only
        // read it, and one that takes the account waits on one round trip the less.
        const looked = lookAtFolder(input, input.folder);
        looked.catch(() => undefined); // awaited below unless the account is held
        const taken = await new AccountLocks(blobs).acquire(accountLock, input.owner, {
          holderEnded: input.holderEnded,
          expiredIsFree: !input.asksHolder,
          mayBeGuest: !!input.mayBeGuest,
        });
        let held: AccountHolder | undefined;
        if (!taken.held) {
          const { holder } = taken;
          const sameConfiguration = holder.configurationId === input.configurationId;
          held = {
            holderWorkflowId: holder.workflowId,
            holderTells: !!holder.tellsWaiters,
            ...(taken.expired ? { holderExpired: { runId: holder.runId } } : {}),
            holder: `${holder.workflowId}${sameConfiguration ? '' : ` (configuration ${holder.configurationId} of the same ESP account)`}${holder.dryRun ? ' (a dry run)' : ''}`,
          };
          if (sameConfiguration && !holder.dryRun) return { state: 'busy', ...held };
          if (!taken.guest) return { state: 'waiting', ...held };
        }
        let folder = input.folder;
        if (!(await claimFolder(input, folder, await looked))) {
          folder = `${input.folder.slice(0, 10)}_run-${input.owner.runId.replace(/[^a-z0-9]/g, '').slice(0, 8)}`;
          if (!(await claimFolder(input, folder, await lookAtFolder(input, folder)))) {
            throw new ConflictError('blob', runFiles.runRecord(input.configurationId, folder));
          }
        }
        // An export that lists otherwise than the run's mode (a redispatch, incrementally; a dry run
        // without the field, in full) uses no more slots than these, perhaps fewer.
        const slots = exportSlots(processor, input.mode);
        const limits = processor.limits();
        const besideWriting = writingChunksBeside(limits, chunksAtOnce(limits) - slots);
        const context: RunContext = {
          esp: configuration.esp,
          status: configuration.status,
          maintenance: configuration.maintenance,
          concurrency: chunksAtOnce(limits),
          ...(slots > 1 ? { exportSlots: slots } : {}),
          ...(besideWriting !== undefined ? { wholeWritingBeside: true, chunksBeside: besideWriting } : {}),
          accountLock,
          folder,
        };
        return held && !taken.held && taken.guest
          ? { state: 'guest', context, share: taken.guest, ...held }
          : { state: 'ready', context };
      });
    },

    /**
     * Moves the configuration to needs_reauth. The alert goes out only when the status changes, so
     * repeated failures (daily runs, retries) alert once; it is saved with the change, so a crash
     * before it is sent does not lose it.
     */
    async markNeedsReauth(input: { configurationId: string; reason: string }): Promise<{ changed: boolean }> {
      return mapFailures(async () => {
        const { alerted } = await changeWithAlert(
          configurations,
          deps.alerts,
          input.configurationId,
          (c) => ({
            change: { status: 'needs_reauth', statusReason: input.reason.slice(0, 500) },
            alert:
              c.status === 'needs_reauth'
                ? undefined
                : {
                    status: 'needs_reauth',
                    message: `credentials no longer work; re-authorize this configuration (${input.reason.slice(0, 200)})`,
                  },
          }),
        );
        return { changed: alerted };
      });
    },
  };

  /** Who has claimed a run folder (a run id), and whether it holds files. */
  async function lookAtFolder(input: StartRunInput, folder: string) {
    const key = runFiles.runRecord(input.configurationId, folder);
    const [claimedBy, files] = await Promise.all([
      claimOf(key),
      blobs.listPage(runFiles.prefix(input.configurationId, folder), { limit: 1 }),
    ]);
    return { key, claimedBy, holdsFiles: files.length > 0 };
  }

  async function claimOf(key: string): Promise<string | undefined> {
    try {
      return (JSON.parse((await blobs.get(key)).body.toString('utf8')) as { runId?: string }).runId;
    } catch (err) {
      if (err instanceof NotFoundError) return undefined;
      throw err;
    }
  }

  async function claimFolder(
    input: StartRunInput,
    folder: string,
    looked: Awaited<ReturnType<typeof lookAtFolder>>,
  ): Promise<boolean> {
    const { key, claimedBy, holdsFiles } = looked;
    if (claimedBy !== undefined) return claimedBy === input.owner.runId; // a retry finds its own claim
    // A folder with files but no claim holds a run of an earlier version: not this run's.
    if (holdsFiles) return false;
    const record = {
      workflowId: input.owner.workflowId,
      runId: input.owner.runId,
      mode: input.mode,
      dryRun: input.dryRun,
      claimedAt: new Date().toISOString(),
    };
    try {
      await blobs.put(key, JSON.stringify(record, null, 2) + '\n', {
        ifNoneMatch: '*',
        contentType: 'application/json',
      });
      return true;
    } catch (err) {
      if (!(err instanceof ConflictError)) throw err;
      return (await claimOf(key)) === input.owner.runId;
    }
  }

  async function listPage(after: string | undefined, limit: number) {
    const keys = await blobs.listPage('configurations/', {
      after: after === undefined ? undefined : `configurations/${after}.json`,
      limit,
    });
    const ids = keys
      .filter((k) => k.endsWith('.json'))
      .map((k) => k.slice('configurations/'.length, -'.json'.length));
    const markers = new Set(
      (await blobs.list(UNREADABLE_MARKERS)).map((k) => k.slice(UNREADABLE_MARKERS.length, -'.json'.length)),
    );
    const entries: ListedConfiguration[] = [];
    for (let i = 0; i < ids.length; i += READS_AT_ONCE) {
      const read = await Promise.all(ids.slice(i, i + READS_AT_ONCE).map((id) => readListed(id, markers)));
      for (const entry of read) if (entry) entries.push(entry);
    }
    return { entries, nextCursor: keys.length === limit ? ids.at(-1) : undefined };
  }

  async function readListed(id: string, markers: Set<string>): Promise<ListedConfiguration | undefined> {
    let configuration: Configuration;
    try {
      configuration = await configurations.get(id);
    } catch (err) {
      if (err instanceof NotFoundError) return undefined; // deleted since it was listed
      if (!(err instanceof CorruptDataError) && !(err instanceof ZodError)) throw err;
      const reason = err.message.slice(0, 300);
      await alertUnreadableOnce(id, reason);
      return { configurationId: id, unreadable: reason };
    }
    if (markers.has(id)) await blobs.delete(`${UNREADABLE_MARKERS}${id}.json`);
    if (configuration.alertOutbox?.length) await sendOutbox(configurations, deps.alerts, configuration);
    return { configurationId: id, esp: configuration.esp, status: configuration.status };
  }

  /** An unreadable document alerts once (a marker remembers it) until it reads again. */
  async function alertUnreadableOnce(id: string, reason: string): Promise<void> {
    try {
      await blobs.put(
        `${UNREADABLE_MARKERS}${id}.json`,
        JSON.stringify({ reason, at: new Date().toISOString() }),
        {
          ifNoneMatch: '*',
          contentType: 'application/json',
        },
      );
    } catch (err) {
      if (err instanceof ConflictError) return;
      throw err;
    }
    await deps.alerts({
      configurationId: id,
      esp: 'unknown',
      status: 'run_failed',
      message: `the configuration document cannot be read, so it is skipped every day until it is fixed (${reason})`,
    });
  }
}
