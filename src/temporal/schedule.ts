import {
  ScheduleAlreadyRunning,
  ScheduleOverlapPolicy,
  type Client,
  type ScheduleOptions,
} from '@temporalio/client';
import { readable } from '../codec/readable-text';
import { SCHEDULE_ID, TASK_QUEUE } from './constants';
import { describeScheduleRaw, scheduleKeyUse, type KeyUse, type RawSchedule } from './payload-key-use';

export interface ScheduleApplied {
  result: 'created' | 'updated' | 'recreated';
  /** What the schedule held under another key than the current one (the reason it was recreated). */
  replaced: KeyUse[];
  nextRuns: Date[];
}

/**
 * Creates or updates the `espresso-daily` schedule (idempotent): dailySyncWorkflow every day at
 * `time` UTC, missed runs caught up within one day. A day's run starts whatever yesterday's is
 * still doing (overlap allowed): each configuration has one writer, so a configuration still being
 * written is reported busy, and every other configuration runs on time.
 *
 * Everything the schedule stores ends up under `currentKey` (the ring's current payload key): an
 * update re-encrypts its action, but what it hands each run (the last completion result or failure
 * of a run it waited on) cannot be rewritten, so a schedule holding anything under another key is
 * deleted and created again, paused or not as it was. Workers fail every run handed a payload whose
 * key they lack, so this is what lets an old key be dropped.
 */
export async function applySchedule(
  client: Client,
  time: { hour: number; minute: number; dailyConcurrency?: number },
  currentKey: string,
): Promise<ScheduleApplied> {
  const options = {
    scheduleId: SCHEDULE_ID,
    spec: { calendars: [{ hour: time.hour, minute: time.minute, comment: 'daily espresso sync (UTC)' }] },
    action: {
      type: 'startWorkflow' as const,
      workflowType: 'dailySyncWorkflow',
      taskQueue: TASK_QUEUE,
      workflowId: 'daily',
      // Configuration runs at once: the daily run's default unless ESPRESSO_DAILY_CONCURRENCY is set.
      args: [time.dailyConcurrency ? { concurrency: time.dailyConcurrency } : {}],
      // Readable: plain `temporal schedule describe` cannot show a schedule whose summary it
      // cannot decode. Applying replaces an older version's encrypted one.
      staticSummary: readable('Daily espresso sync of every active configuration'),
    },
    policies: { overlap: ScheduleOverlapPolicy.ALLOW_ALL, catchupWindow: '1 day' },
  } satisfies ScheduleOptions;
  const handle = client.schedule.getHandle(SCHEDULE_ID);
  const applied = async (result: ScheduleApplied['result'], replaced: KeyUse[] = []) => {
    const description = await handle.describe();
    return { result, replaced, nextRuns: description.info.nextActionTimes.slice(0, 3) };
  };

  let existing = await describeScheduleRaw(client);
  if (!existing) {
    try {
      await client.schedule.create(options);
      return await applied('created');
    } catch (err) {
      if (!(err instanceof ScheduleAlreadyRunning)) throw err;
      existing = await describeScheduleRaw(client);
      if (!existing) throw err;
    }
  }
  const replaced = (await scheduleKeyUse(client, existing)).filter((use) => use.keyId !== currentKey);
  if (replaced.length > 0) {
    await handle.delete();
    await client.schedule.create({ ...options, state: previousState(existing) });
    return applied('recreated', replaced);
  }
  await handle.update((previous) => ({
    ...previous,
    spec: options.spec,
    action: options.action,
    policies: { ...previous.policies, ...options.policies },
  }));
  return applied('updated');
}

/** Whether the schedule was paused, and why (read raw: its payloads may be under a key no longer held). */
function previousState(existing: RawSchedule): { paused: boolean; note?: string } {
  const state = existing.schedule?.state;
  return { paused: !!state?.paused, note: state?.notes || undefined };
}
