import type { ConnectionLike } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * The server splits a task queue into partitions (4 by default) and lists each one's pollers
 * apart; a worker's polls may all go to partitions other than the first for a minute (starting a
 * fourth worker waited 55 s for it on the dev server). Partition n > 0 is named `/_sys/<queue>/<n>`.
 */
const PARTITIONS = 4;
const TYPES = [
  temporal.api.enums.v1.TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
  temporal.api.enums.v1.TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
];

/**
 * Resolves once a worker polls the task queue: "ready" means polling, not merely started. With
 * `pid`, once that worker process polls (a worker's identity is `<pid>@<host>`), in any partition
 * and for workflow or activity tasks: the server lists pollers for minutes after they stopped, so
 * a new worker is not ready because an old one polled.
 */
export async function waitForWorker(
  connection: ConnectionLike,
  namespace: string,
  taskQueue: string,
  timeoutMs: number,
  options: { pid?: number } = {},
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const queues =
    options.pid === undefined
      ? [{ name: taskQueue, type: TYPES[0]! }]
      : Array.from({ length: PARTITIONS }, (_, n) =>
          n === 0 ? taskQueue : `/_sys/${taskQueue}/${n}`,
        ).flatMap((name) => TYPES.map((type) => ({ name, type })));
  for (;;) {
    for (const { name, type } of queues) {
      const { pollers } = await connection.workflowService
        .describeTaskQueue({ namespace, taskQueue: { name }, taskQueueType: type })
        // A server with fewer partitions may refuse the names of those it does not have.
        .catch((err: unknown) => {
          if (name === taskQueue) throw err;
          return { pollers: [] };
        });
      if (pollers?.some((p) => options.pid === undefined || p.identity?.startsWith(`${options.pid}@`)))
        return;
    }
    if (Date.now() > deadline)
      throw new Error(`no worker polled task queue ${taskQueue} within ${timeoutMs / 1000}s`);
    await sleep(300);
  }
}
