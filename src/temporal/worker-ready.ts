import type { ConnectionLike } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Resolves once a worker polls the task queue: "ready" means polling, not merely started. With
 * `pid`, once that worker process polls (a worker's identity is `<pid>@<host>`): the server lists
 * pollers for minutes after they stopped, so a new worker is not ready because an old one polled.
 */
export async function waitForWorker(
  connection: ConnectionLike,
  namespace: string,
  taskQueue: string,
  timeoutMs: number,
  options: { pid?: number } = {},
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { pollers } = await connection.workflowService.describeTaskQueue({
      namespace,
      taskQueue: { name: taskQueue },
      taskQueueType: temporal.api.enums.v1.TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    });
    const polling = pollers?.filter(
      (p) => options.pid === undefined || p.identity?.startsWith(`${options.pid}@`),
    );
    if (polling?.length) return;
    if (Date.now() > deadline)
      throw new Error(`no worker polled task queue ${taskQueue} within ${timeoutMs / 1000}s`);
    await sleep(300);
  }
}
