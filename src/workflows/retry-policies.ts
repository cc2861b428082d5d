import type { ActivityOptions, Duration, RetryPolicy } from '@temporalio/common';
import { nonRetryableFailureTypes } from '../temporal/failure-types';

/**
 * ESP calls of legacy runs (src/workflows/legacy): transient errors back off exponentially; rate
 * limits retry after the ESP's own delay (the failure carries nextRetryDelay); invalid credentials
 * and rejected requests are not retried.
 */
export const espCallRetry: RetryPolicy = {
  initialInterval: '1 second',
  backoffCoefficient: 2,
  maximumInterval: '2 minutes',
  maximumAttempts: 20,
  nonRetryableErrorTypes: nonRetryableFailureTypes,
};

/** Chunk updates of legacy runs: no attempt limit, six hours at most (dispatch.ts). Non-retryable failures end them at once. */
export const chunkUpdateRetry: RetryPolicy = {
  initialInterval: '1 second',
  backoffCoefficient: 2,
  maximumInterval: '5 minutes',
  nonRetryableErrorTypes: nonRetryableFailureTypes,
};

// Every activity of a run is bounded by time, not by attempts: a few hours of ESP or store outage
// are waited out (retries at most 5 minutes apart), then the activity fails and the run reports it.
// Errors that are not understood are retried a few times only (src/activities/failures.ts).

const waitOut = (maximumInterval: Duration): RetryPolicy => ({
  initialInterval: '1 second',
  backoffCoefficient: 2,
  maximumInterval,
  nonRetryableErrorTypes: nonRetryableFailureTypes,
});

/** Blob store, secret store and Temporal bookkeeping: a store outage of up to two hours is waited out. */
export const storeOptions: ActivityOptions = {
  startToCloseTimeout: '1 minute',
  scheduleToCloseTimeout: '2 hours',
  retry: waitOut('1 minute'),
};

/** The export lists the whole list: bounded by the run's own deadline. */
export const exportOptions = (deadlineMs: number): ActivityOptions => ({
  startToCloseTimeout: deadlineMs,
  scheduleToCloseTimeout: deadlineMs,
  heartbeatTimeout: '30 seconds',
  retry: waitOut('5 minutes'),
});

/**
 * One chunk (at most 10,000 contacts), six hours with outages waited out. An attempt takes minutes
 * where an ESP writes batches, and about 70 minutes on Klaviyo, which writes one profile per request
 * (10,000 at a quarter of 10/s): two hours leaves room for that and for 429s waited out.
 */
export const chunkOptions: ActivityOptions = {
  startToCloseTimeout: '2 hours',
  scheduleToCloseTimeout: '6 hours',
  heartbeatTimeout: '30 seconds',
  retry: waitOut('5 minutes'),
};
