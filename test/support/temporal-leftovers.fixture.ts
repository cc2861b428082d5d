// Run by test/leftovers.test.ts in a mocha of its own (its name is outside the suite's spec): a
// test that leaves a run waiting on the real task queue and a schedule, which the root hook must
// end and report.
import { TASK_QUEUE } from '../../src/temporal/constants';
import { temporalEnv } from './temporal';

const tag = process.env.ESPRESSO_LEFTOVER_TAG ?? 'leftover';

describe('a test that cleans up nothing', () => {
  it('starts a run on the real task queue and a schedule', async () => {
    const { client } = await temporalEnv();
    await client.workflow.start('configurationSyncWorkflow', {
      taskQueue: TASK_QUEUE,
      workflowId: `sync/${tag}/2026-11-28/first-run`,
      args: [{}],
    });
    await client.schedule.create({
      scheduleId: `${tag}-schedule`,
      spec: { calendars: [{ hour: 6 }] },
      action: { type: 'startWorkflow', workflowType: 'dailySyncWorkflow', taskQueue: TASK_QUEUE, args: [{}] },
    });
  });
});
