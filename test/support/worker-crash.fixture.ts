// Run by test/workflows/harness.test.ts in a mocha of its own (its name is outside the suite's
// spec): a test waits on a workflow while the harness's worker dies, and must fail at once.
import { configurationSyncWorkflow } from '../../src/workflows';
import { startEspresso, type Espresso } from './espresso';

/** The error the staged crash carries, chosen by the harness test. */
const CRASH_MESSAGE = process.env.ESPRESSO_STAGED_CRASH ?? 'staged worker crash';

describe('a workflow test whose worker dies', function () {
  let e: Espresso;
  before(async () => {
    e = await startEspresso();
  });
  // The run stays open: the dev server is this mocha's own and ends with it.
  after(() => e.stop());

  it('waits for a run the dead worker will never finish', async () => {
    const { configuration } = await e.connect(5);
    // The path the SDK itself takes when the worker meets an unexpected error.
    (
      e.worker as unknown as { unexpectedErrorSubject: { error(err: Error): void } }
    ).unexpectedErrorSubject.error(new Error(CRASH_MESSAGE));
    const handle = await e.client.workflow.start(configurationSyncWorkflow, {
      taskQueue: e.taskQueue,
      workflowId: `harness-crash-${configuration.id}`,
      args: [{ configurationId: configuration.id, runDate: '2026-11-28', mode: 'incremental' }],
    });
    await handle.result();
  });
});
