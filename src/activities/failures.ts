// Where an ESP or storage error becomes a Temporal activity failure: the retry decision is made
// here, from the error's type. A 429 becomes a retry after exactly the ESP's delay.
import { ApplicationFailure } from '@temporalio/activity';
import {
  InvalidCredentialsError,
  RateLimitedError,
  RequestRejectedError,
  TransientError,
} from '../processors/errors';
import { UnknownEspError } from '../processors/registry';
import { CorruptDataError, NotFoundError } from '../storage';
import { failureTypes } from '../temporal/failure-types';

export function toActivityFailure(err: unknown): unknown {
  if (err instanceof ApplicationFailure) return err;
  if (err instanceof InvalidCredentialsError) {
    return ApplicationFailure.nonRetryable(err.message, failureTypes.invalidCredentials);
  }
  if (err instanceof RateLimitedError) {
    return ApplicationFailure.create({
      message: err.message,
      type: failureTypes.rateLimited,
      nextRetryDelay: err.retryAfterMs,
    });
  }
  if (err instanceof TransientError) return ApplicationFailure.retryable(err.message, failureTypes.transient);
  if (err instanceof RequestRejectedError) {
    return ApplicationFailure.nonRetryable(err.message, failureTypes.requestRejected);
  }
  if (err instanceof NotFoundError && err.store === 'configuration') {
    return ApplicationFailure.nonRetryable(
      `configuration ${err.key} does not exist`,
      failureTypes.configurationNotFound,
    );
  }
  if (err instanceof NotFoundError && err.store === 'blob') {
    return ApplicationFailure.nonRetryable(`file ${err.key} is missing`, failureTypes.chunkMissing);
  }
  if (err instanceof CorruptDataError)
    return ApplicationFailure.nonRetryable(err.message, failureTypes.corruptData);
  if (err instanceof UnknownEspError)
    return ApplicationFailure.nonRetryable(err.message, failureTypes.unknownEsp);
  return err;
}

/** Runs an activity body and converts whatever it throws. */
export async function mapFailures<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw toActivityFailure(err);
  }
}
