import {
  ScheduleAlreadyRunning,
  ScheduleOverlapPolicy,
  type Client,
  type ScheduleOptions,
} from '@temporalio/client';
import { SCHEDULE_ID, TASK_QUEUE } from './constants';

/**
 * Creates or updates the `espresso-daily` schedule (idempotent): dailySyncWorkflow every day at
 * `time` UTC, missed runs caught up within one day. A day's run starts whatever yesterday's is
 * still doing (overlap allowed): each configuration has one writer, so a configuration still being
 * written is reported busy, and every other configuration runs on time.
 */
export async function applySchedule(
  client: Client,
  time: { hour: number; minute: number; dailyConcurrency?: number },
): Promise<{ result: 'created' | 'updated'; nextRuns: Date[] }> {
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
      // No staticSummary: it would be encrypted like every payload, and plain `temporal schedule
      // describe` cannot show a schedule whose summary it cannot decode. Applying removes an old one.
    },
    policies: { overlap: ScheduleOverlapPolicy.ALLOW_ALL, catchupWindow: '1 day' },
  } satisfies ScheduleOptions;
  let result: 'created' | 'updated' = 'created';
  try {
    await client.schedule.create(options);
  } catch (err) {
    if (!(err instanceof ScheduleAlreadyRunning)) throw err;
    result = 'updated';
    await client.schedule.getHandle(SCHEDULE_ID).update((previous) => ({
      ...previous,
      spec: options.spec,
      action: options.action,
      policies: { ...previous.policies, ...options.policies },
    }));
  }
  const description = await client.schedule.getHandle(SCHEDULE_ID).describe();
  return { result, nextRuns: description.info.nextActionTimes.slice(0, 3) };
}
