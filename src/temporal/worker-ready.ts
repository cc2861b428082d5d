import type { ConnectionLike } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { setTimeout as sleep } from 'node:timers/promises';

/** Resolves once a worker polls the task queue: "ready" means polling, not merely started. */
export async function waitForWorker(
  connection: ConnectionLike,
  namespace: string,
  taskQueue: string,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { pollers } = await connection.workflowService.describeTaskQueue({
      namespace,
      taskQueue: { name: taskQueue },
      taskQueueType: temporal.api.enums.v1.TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    });
    if (pollers?.length) return;
    if (Date.now() > deadline)
      throw new Error(`no worker polled task queue ${taskQueue} within ${timeoutMs / 1000}s`);
    await sleep(300);
  }
}
