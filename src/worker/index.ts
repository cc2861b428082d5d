import { NativeConnection, Worker } from '@temporalio/worker';
import { createActivities, type ActivityDeps } from '../activities';
import { TASK_QUEUE } from '../temporal/constants';

export interface WorkerOptions extends ActivityDeps {
  connection: NativeConnection;
  namespace: string;
  taskQueue?: string;
  /** Pre-bundled workflow code (tests bundle once); default: bundled at start from src/workflows. */
  workflowBundle?: { code: string };
}

export const workflowsPath = require.resolve('../workflows');

/** Builds the worker; the entry point (main.ts) and the tests both use this. */
export function createWorker({
  connection,
  namespace,
  taskQueue = TASK_QUEUE,
  workflowBundle,
  ...deps
}: WorkerOptions) {
  return Worker.create({
    connection,
    namespace,
    taskQueue,
    ...(workflowBundle ? { workflowBundle } : { workflowsPath }),
    activities: createActivities(deps),
  });
}
