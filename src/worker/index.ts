import { NativeConnection, Worker } from '@temporalio/worker';
import { createActivities, type ActivityDeps } from '../activities';
import { TASK_QUEUE } from '../temporal/constants';

export interface WorkerOptions extends ActivityDeps {
  connection: NativeConnection;
  namespace: string;
  taskQueue?: string;
}

/** Builds the worker; the entry point (main.ts) and the tests both use this. */
export function createWorker({ connection, namespace, taskQueue = TASK_QUEUE, ...deps }: WorkerOptions) {
  return Worker.create({
    connection,
    namespace,
    taskQueue,
    workflowsPath: require.resolve('../workflows'),
    activities: createActivities(deps),
  });
}
