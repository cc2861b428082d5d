// How the benchmark and `espresso start` know a worker polls: the logic around the server's answer
// (a fake connection answering DescribeTaskQueue per partition and task type).
import { strict as assert } from 'node:assert';
import type { ConnectionLike } from '@temporalio/client';
import { waitForWorker } from '../src/temporal/worker-ready';

/** A connection whose task queue lists `pollers` (identities) under each partition name and type (1 workflow, 2 activity). */
function serverListing(
  pollers: Record<string, string[]>,
  refused: string[] = [],
): {
  connection: ConnectionLike;
  asked: string[];
} {
  const asked: string[] = [];
  const connection = {
    workflowService: {
      async describeTaskQueue(req: { taskQueue: { name: string }; taskQueueType: number }) {
        const key = `${req.taskQueue.name}#${req.taskQueueType}`;
        asked.push(key);
        if (refused.includes(req.taskQueue.name)) throw new Error(`no partition ${req.taskQueue.name}`);
        return { pollers: (pollers[key] ?? []).map((identity) => ({ identity })) };
      },
    },
  } as unknown as ConnectionLike;
  return { connection, asked };
}

describe('waiting for a worker to poll', () => {
  it('finds a worker whose polls all went to another partition of the task queue', async () => {
    const { connection, asked } = serverListing({ '/_sys/espresso/2#2': ['4242@host'] });
    await waitForWorker(connection, 'default', 'espresso', 1_000, { pid: 4242 });
    assert.ok(asked.includes('espresso#1'), 'the first partition was not asked');
  });

  it('is not fooled by another process polling, and names the task queue when none did in time', async () => {
    const { connection } = serverListing({
      'espresso#1': ['1111@host'],
      '/_sys/espresso/1#1': ['1111@host'],
    });
    await assert.rejects(
      waitForWorker(connection, 'default', 'espresso', 500, { pid: 4242 }),
      /no worker polled task queue espresso within 0.5s/,
    );
  });

  it('goes on past partitions the server refuses, but not past a refused task queue', async () => {
    const partitions = serverListing({ '/_sys/espresso/3#1': ['4242@host'] }, ['/_sys/espresso/1']);
    await waitForWorker(partitions.connection, 'default', 'espresso', 1_000, { pid: 4242 });
    const root = serverListing({}, ['espresso']);
    await assert.rejects(
      waitForWorker(root.connection, 'default', 'espresso', 1_000, { pid: 4242 }),
      /no partition espresso/,
    );
  });

  it('without a pid, any poller of the task queue will do', async () => {
    const { connection } = serverListing({ 'espresso#1': ['1111@host'] });
    await waitForWorker(connection, 'default', 'espresso', 1_000);
  });
});
