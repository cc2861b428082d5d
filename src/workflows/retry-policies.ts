import type { RetryPolicy } from '@temporalio/common';
import { nonRetryableFailureTypes } from '../temporal/failure-types';

/**
 * ESP calls: transient errors back off exponentially; rate limits retry after the ESP's own delay
 * (the failure carries nextRetryDelay); invalid credentials and rejected requests are not retried.
 */
export const espCallRetry: RetryPolicy = {
  initialInterval: '1 second',
  backoffCoefficient: 2,
  maximumInterval: '2 minutes',
  maximumAttempts: 20,
  nonRetryableErrorTypes: nonRetryableFailureTypes,
};

/**
 * Chunk updates keep trying (no attempt limit): an ESP outage of hours must not lose the run.
 * Non-retryable failures still end them at once.
 */
export const chunkUpdateRetry: RetryPolicy = {
  initialInterval: '1 second',
  backoffCoefficient: 2,
  maximumInterval: '5 minutes',
  nonRetryableErrorTypes: nonRetryableFailureTypes,
};
