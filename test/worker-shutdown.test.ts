// ESPRESSO_SHUTDOWN_GRACE_MS as an operator meets it (README, docs/operations.md): a worker process
// told to stop while a chunk update writes gives it that long, then cancels it and exits; the run
// resumes on another worker and loses nothing. Real processes: the dev server, the Sandbox, workers.
import { strict as assert } from 'node:assert';
import { setTimeout as sleep } from 'node:timers/promises';
import { benchDeps, prepare, sandboxJson, verifyAgainstChunks } from '../bench/scenarios';
import { startStack } from '../bench/stack';
import type { SandboxStats } from '../src/sandbox/stats';
import { TASK_QUEUE } from '../src/temporal/constants';

const ACCOUNT = { id: 'acct_slow_writes', apiKey: 'slow-writes-key-01' };
const CONTACTS = 3_000;
/** Six batches of 500, one every 2 s: the chunk update writes for about 12 s. */
const WRITES = { ESPRESSO_SANDBOX_CLIENT_WRITE_RPS: '0.5' };
const GRACE_MS = 1_500;

describe('a worker stopped while it writes (ESPRESSO_SHUTDOWN_GRACE_MS)', function () {
  this.timeout(240_000);

  it('gives its in-flight chunk update the grace, then cancels it and exits; another worker ends the run, no contact lost or written twice', async () => {
    const stack = await startStack({
      accounts: [{ id: ACCOUNT.id, name: 'Slow writes', apiKeys: [ACCOUNT.apiKey], lists: [] }],
    });
    try {
      const pacing = { rps: 1000, concurrency: 8 };
      const deps = benchDeps(stack, pacing);
      const { configuration, listId } = await prepare(stack, deps, ACCOUNT, CONTACTS);
      const first = await stack.startWorker(pacing, {
        ...WRITES,
        ESPRESSO_SHUTDOWN_GRACE_MS: String(GRACE_MS),
      });
      const run = await stack.env.client.workflow.start('configurationSyncWorkflow', {
        taskQueue: TASK_QUEUE,
        workflowId: `test/shutdown/${listId}`,
        args: [{ configurationId: configuration.id, runDate: '2026-01-01', mode: 'full' }],
      });
      const writes = async () =>
        (await sandboxJson<Record<string, SandboxStats>>(stack, '/stats'))[ACCOUNT.id]?.needed.writing ?? 0;
      const deadline = Date.now() + 60_000;
      while ((await writes()) < 1) {
        assert.ok(Date.now() < deadline, 'no batch was written within 60 s');
        await sleep(50);
      }

      // Five batches (about 10 s) are left: the worker waits the grace for them, no longer.
      const stopping = Date.now();
      await first.stop();
      const tookMs = Date.now() - stopping;
      assert.ok(tookMs >= GRACE_MS - 100, `the worker exited after ${tookMs} ms, before its grace`);
      assert.ok(tookMs < GRACE_MS + 4_000, `the worker took ${tookMs} ms to exit (grace ${GRACE_MS} ms)`);
      const writtenByFirst = await writes();
      assert.ok(writtenByFirst < CONTACTS / 500, `the first worker wrote all ${writtenByFirst} batches`);
      await sleep(3_000);
      assert.equal(await writes(), writtenByFirst, 'a batch was written after the worker had exited');

      const second = await stack.startWorker(pacing, WRITES);
      const result = (await run.result()) as { status: string; updated: number };
      await second.stop();
      assert.deepEqual([result.status, result.updated], ['completed', CONTACTS]);
      // Every contact holds its chunk file's value and none was ever written two values.
      await verifyAgainstChunks(stack, deps, configuration.id, ACCOUNT.id, listId, CONTACTS);
    } finally {
      await stack.stop();
    }
  });
});
