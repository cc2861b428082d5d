// A run's first step: its ESP account (one run per account at a time) and its folder.
import {
  condition,
  getExternalWorkflowHandle,
  setCurrentDetails,
  sleep,
  upsertSearchAttributes,
} from '@temporalio/workflow';
import type { RunContext, StartRunAnswer } from '../../activities/configurations';
import { searchAttributes } from '../../temporal/constants';
import { accountWantedSignal, runFolder } from '../configuration-run';
import { ACCOUNT_GUEST_PATCH, RUNS_LOCAL_STEPS_PATCH } from './patches';
import { Busy, steps, type SyncRun } from './state';

/**
 * A run waiting for an older holder, which does not tell when it gives the account back, looks
 * again after FIRST_WAIT_MS, doubling to MAX_WAIT_MS; a holder that tells is waited for at most
 * MAX_WAIT_MS all the same (one that stopped without giving it back).
 */
const FIRST_WAIT_MS = 1_000;
const MAX_WAIT_MS = 5 * 60_000;

/**
 * Takes the ESP account and the run's folder; while another configuration's run holds the
 * account, waits. With `handoff`, it asks the holder to tell it when the account is free, then
 * looks once more (the holder may have given it back meanwhile) before waiting for the word. A run
 * that waits may become the holder's guest (`guestOf`): the holder lends it what its ending chunks
 * held, and it maintains and lists on that until the account is its own (ownAccount).
 */
export async function takeAccount(run: SyncRun): Promise<{ context: RunContext; guestOf?: string }> {
  const answer = await untilTaken(run, { asGuest: true });
  upsertSearchAttributes([
    { key: searchAttributes.configurationId, value: run.input.configurationId },
    { key: searchAttributes.esp, value: answer.context.esp },
    { key: searchAttributes.status, value: 'running' },
  ]);
  if (answer.state === 'ready') return { context: answer.context };
  setCurrentDetails(`listing on what its ESP account's holder lends it: ${answer.holder}`);
  return { context: answer.context, guestOf: answer.holderWorkflowId };
}

/** A guest of the account's holder (`holderWorkflowId`) waits until the account is its own. */
export async function ownAccount(run: SyncRun, holderWorkflowId: string): Promise<void> {
  // The holder tells its guest when it gives the account back: a word from before this asks is old.
  run.handoff.freed = false;
  await untilTaken(run, { told: holderWorkflowId });
  setCurrentDetails('');
}

async function untilTaken(
  run: SyncRun,
  { asGuest = false, told: toldBefore }: { asGuest?: boolean; told?: string },
): Promise<Extract<StartRunAnswer, { state: 'ready' | 'guest' }>> {
  const { input, owner, progress, handoff } = run;
  const { startRun } = steps(run);
  // Runs of this version ask an expired lock's holder whether it has ended (below). Their startRun
  // is a local activity: it and this code are always of one version. Older runs call it as an
  // activity, which a worker of another version may answer, and take an expired lock as they did.
  const asksHolder = run.patched(RUNS_LOCAL_STEPS_PATCH);
  /** A holder whose lock expired, which this run saw end: the next ask takes the account. */
  let ended: { workflowId: string; runId: string } | undefined;
  /** Set once the run waits: the holder may lend it some of the account. */
  let mayBeGuest = false;
  const ask = () =>
    startRun({
      configurationId: input.configurationId,
      folder: runFolder(input.runDate, input.folderSuffix),
      owner,
      mode: input.mode,
      dryRun: !!input.dryRun,
      ...(asksHolder ? { asksHolder } : {}),
      ...(ended ? { holderEnded: ended } : {}),
      ...(mayBeGuest ? { mayBeGuest } : {}),
    });
  const tell = (holderWorkflowId: string) =>
    getExternalWorkflowHandle(holderWorkflowId)
      .signal(accountWantedSignal, { workflowId: owner.workflowId, ...(mayBeGuest ? { guest: true } : {}) })
      .then(
        () => true,
        () => false, // the holder has ended: its lock is given back, or expires
      );
  let wait = FIRST_WAIT_MS;
  /** The holder this run asked to tell it, and asked again after: it waits for the word. */
  let told = toldBefore;
  for (;;) {
    const answer = await ask();
    if (answer.state === 'ready' || (answer.state === 'guest' && asGuest)) return answer;
    // An expired lock is the account's once its run has ended; a run still running (its workers
    // were all down for longer than the lock lasts, say) keeps it. A signal tells which: one to a
    // workflow that has ended fails. An earlier run of this workflow id has ended (one runs at once).
    let heardExpired = false;
    const expired = asksHolder ? answer.holderExpired : undefined;
    if (expired && !(ended?.workflowId === answer.holderWorkflowId && ended.runId === expired.runId)) {
      const holder = { workflowId: answer.holderWorkflowId, runId: expired.runId };
      if (holder.workflowId === owner.workflowId || !(await tell(holder.workflowId))) {
        ended = holder;
        continue;
      }
      heardExpired = true;
    }
    if (answer.state === 'busy') {
      throw new Busy(`another run is writing this configuration: ${answer.holder}; this run wrote nothing`);
    }
    // A guest lists meanwhile: its progress and details say so.
    if (answer.state !== 'guest') {
      progress.phase = 'starting';
      setCurrentDetails(`waiting for its ESP account, held by ${answer.holder}`);
    }
    // The run that will export beside its chunks (write-while-exporting.ts) may be lent some.
    mayBeGuest ||=
      asGuest && handoff.on && !input.dryRun && !input.retryOf && run.patched(ACCOUNT_GUEST_PATCH);
    if (handoff.on && answer.holderTells && told !== answer.holderWorkflowId) {
      handoff.freed = false;
      const heard = heardExpired || (await tell(answer.holderWorkflowId));
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
