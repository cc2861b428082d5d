// Where an ESP or storage error becomes a Temporal activity failure: the retry decision is made
// here, from the error's type. A 429 becomes a retry after exactly the ESP's delay.
import { ApplicationFailure, Context } from '@temporalio/activity';
import {
  InvalidCredentialsError,
  RateLimitedError,
  RequestRejectedError,
  sanitize,
  TransientError,
} from '../processors/errors';
import { UnknownEspError } from '../processors/registry';
import { DryRunFolderError } from '../runs/dry-runs';
import { CorruptDataError, NotFoundError } from '../storage';
import { failureTypes } from '../temporal/failure-types';

/** An error espresso does not recognise is retried this many times at most, then fails the activity. */
export const UNEXPECTED_ATTEMPTS = 5;

/** The configuration stopped being active while its run was writing (disabled, needs_reauth). */
export class InactiveConfigurationError extends Error {
  override name = 'InactiveConfigurationError';
}

export function toActivityFailure(err: unknown, attempt = 1): unknown {
  if (err instanceof ApplicationFailure) return err;
  // Every message goes into the run's history, its summary and alerts: ESP text in it (an export's
  // reason, a code) may name an address, whichever error carries it.
  const message = sanitize(err instanceof Error ? err.message : String(err));
  if (err instanceof InvalidCredentialsError) {
    return ApplicationFailure.nonRetryable(message, failureTypes.invalidCredentials);
  }
  if (err instanceof RateLimitedError) {
    return ApplicationFailure.create({
      message,
      type: failureTypes.rateLimited,
      nextRetryDelay: err.retryAfterMs,
    });
  }
  if (err instanceof TransientError) return ApplicationFailure.retryable(message, failureTypes.transient);
  if (err instanceof RequestRejectedError) {
    return ApplicationFailure.nonRetryable(message, failureTypes.requestRejected);
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
    return ApplicationFailure.nonRetryable(message, failureTypes.corruptData);
  if (err instanceof UnknownEspError)
    return ApplicationFailure.nonRetryable(message, failureTypes.unknownEsp);
  if (err instanceof InactiveConfigurationError)
    return ApplicationFailure.nonRetryable(message, failureTypes.configurationInactive);
  if (err instanceof DryRunFolderError)
    return ApplicationFailure.nonRetryable(message, failureTypes.invalidInput);
  // Anything else (a store refusing access, a bug): a few retries, then the run fails and says why.
  return ApplicationFailure.create({
    message: err instanceof Error ? sanitize(`${err.name}: ${err.message}`) : message,
    type: failureTypes.unexpected,
    nonRetryable: attempt >= UNEXPECTED_ATTEMPTS,
  });
}

/**
 * Runs an activity body and converts whatever it throws. Once the activity is cancelled (its run
 * was cancelled or passed its deadline), it ends as cancelled, whatever the body threw on the way.
 */
export async function mapFailures<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    const context = current();
    if (context?.cancellationSignal.aborted) throw context.cancellationSignal.reason ?? err;
    throw toActivityFailure(err, context?.info.attempt);
  }
}

function current(): Context | undefined {
  try {
    return Context.current();
  } catch {
    return undefined;
  }
}
