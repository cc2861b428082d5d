import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { NativeConnection, Worker } from '@temporalio/worker';
import { createActivities } from '../activities';
import type { ActivityDeps } from '../activities/deps';
import { dataConverter, type PayloadKeys } from '../codec';
import { TASK_QUEUE } from '../temporal/constants';

export interface WorkerOptions extends ActivityDeps {
  connection: NativeConnection;
  namespace: string;
  taskQueue?: string;
  /** Pre-bundled workflow code (tests bundle once); default: bundled at start from src/workflows. */
  workflowBundle?: { code: string };
  /** Encrypts every payload and failure message the worker sends to Temporal. */
  payloadKeys: PayloadKeys;
  /** On shutdown, in-flight activities get this long to finish before they are cancelled. */
  shutdownGraceTimeMs?: number;
  /** Runs unencrypted payloads too (ESPRESSO_ALLOW_PLAINTEXT_PAYLOADS): only while migrating. */
  allowPlaintextPayloads?: boolean;
}

export const workflowsPath = require.resolve('../workflows');
/** Bundled with the workflows too, so workflow failures are encoded like activity failures. */
export const failureConverterPath = require.resolve('../codec/failure-converter');
/** Bundled with the workflows too, so the summaries workflows give their children stay readable. */
export const payloadConverterPath = require.resolve('../codec/readable-text');
/** Written by `npm run build` (src/worker/bundle.ts). */
export const prebuiltBundlePath = join(__dirname, '..', '..', 'workflow-bundle.js');

/** Builds the worker; the entry point (main.ts) and the tests both use this. */
export function createWorker({
  connection,
  namespace,
  taskQueue = TASK_QUEUE,
  workflowBundle,
  payloadKeys,
  shutdownGraceTimeMs = 15_000,
  allowPlaintextPayloads = false,
  ...deps
}: WorkerOptions) {
  return Worker.create({
    connection,
    namespace,
    taskQueue,
    dataConverter: dataConverter(payloadKeys, { plaintext: allowPlaintextPayloads ? 'pass' : 'refuse' }),
    shutdownGraceTime: shutdownGraceTimeMs,
    // Heartbeats reach the server within seconds, so cancellation reaches activities within seconds.
    maxHeartbeatThrottleInterval: '3 seconds',
    defaultHeartbeatThrottleInterval: '3 seconds',
    ...(workflowBundle
      ? { workflowBundle }
      : existsSync(prebuiltBundlePath)
        ? { workflowBundle: { codePath: prebuiltBundlePath } }
        : { workflowsPath }),
    activities: createActivities(deps),
  });
}
