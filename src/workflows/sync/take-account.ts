// A run's first step: its ESP account (one run per account at a time) and its folder.
import {
  condition,
  getExternalWorkflowHandle,
  setCurrentDetails,
  sleep,
  upsertSearchAttributes,
} from '@temporalio/workflow';
import type { RunContext } from '../../activities/configurations';
import { searchAttributes } from '../../temporal/constants';
import { accountWantedSignal, runFolder } from '../configuration-run';
import { RUNS_LOCAL_STEPS_PATCH } from './patches';
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
 * looks once more (the holder may have given it back meanwhile) before waiting for the word.
 */
export async function takeAccount(run: SyncRun): Promise<RunContext> {
  const { input, owner, progress, handoff } = run;
  const { startRun } = steps(run);
  // Runs of this version ask an expired lock's holder whether it has ended (below). Their startRun
  // is a local activity: it and this code are always of one version. Older runs call it as an
  // activity, which a worker of another version may answer, and take an expired lock as they did.
  const asksHolder = run.patched(RUNS_LOCAL_STEPS_PATCH);
  /** A holder whose lock expired, which this run saw end: the next ask takes the account. */
  let ended: { workflowId: string; runId: string } | undefined;
  const ask = () =>
    startRun({
      configurationId: input.configurationId,
      folder: runFolder(input.runDate, input.folderSuffix),
      owner,
      mode: input.mode,
      dryRun: !!input.dryRun,
      ...(asksHolder ? { asksHolder } : {}),
      ...(ended ? { holderEnded: ended } : {}),
    });
  const tell = (holderWorkflowId: string) =>
    getExternalWorkflowHandle(holderWorkflowId)
      .signal(accountWantedSignal, { workflowId: owner.workflowId })
      .then(
        () => true,
        () => false, // the holder has ended: its lock is given back, or expires
      );
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
    progress.phase = 'starting';
    setCurrentDetails(`waiting for its ESP account, held by ${answer.holder}`);
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
