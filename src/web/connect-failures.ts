// What the connect pages answer when a step cannot go on: nothing is connected or changed.
import type { Response } from 'express';
import { ConnectError } from '../connect';
import type { BaseProcessor } from '../processors/base-processor';
import {
  InvalidCredentialsError,
  RateLimitedError,
  RequestRejectedError,
  TransientError,
} from '../processors/errors';
import { NotFoundError } from '../storage';
import { errorPage } from './error-pages';
import { escapeHtml } from './pages';
import type { ClaimProblem } from './pending';

/** A connect step that failed: what happened (`message` is HTML), and the way to start again. */
export function failure(res: Response, status: number, title: string, message: string, esp: string): void {
  errorPage(
    res,
    status,
    title,
    `<h1>${escapeHtml(title)}</h1><p>${message}</p><p><a class="button" href="/auth/${escapeHtml(esp)}/start">Try again</a> · <a href="/">All ESPs</a></p>`,
  );
}

export function unknownEsp(res: Response): void {
  errorPage(
    res,
    404,
    'Unknown ESP',
    `<h1>We don't know that ESP</h1><p><a href="/">See the ESPs you can connect</a>.</p>`,
  );
}

export function expired(res: Response, esp: string): void {
  failure(
    res,
    400,
    'This link has expired',
    'This connection link has expired, was already used, or was opened in another browser. Nothing was connected. Please start again.',
    esp,
  );
}

/** A pending flow that cannot be continued on this route; nothing is created or changed. */
export function claimFailure(res: Response, problem: ClaimProblem, esp: string): void {
  if (problem !== 'other_esp') return expired(res, esp);
  failure(
    res,
    400,
    'This connection belongs to another ESP',
    'This connection was started for another ESP than the one this page connects. Nothing was connected or changed. Please start again from the list of ESPs.',
    esp,
  );
}

export function unknownConfiguration(res: Response, esp: string): void {
  failure(
    res,
    404,
    'Unknown configuration',
    'The configuration this link re-authorizes does not exist any more.',
    esp,
  );
}

export function otherEspConfiguration(res: Response, processor: BaseProcessor): void {
  failure(
    res,
    400,
    'That configuration is not connected to this ESP',
    `This link re-authorizes a configuration of another ESP, not ${escapeHtml(processor.descriptor.displayName)}. Nothing was changed. Use the re-authorization link on the admin page.`,
    processor.descriptor.id,
  );
}

/** The publisher's ESP refused or did not answer (OAuth callback, API key, list choice). */
export function espFailure(res: Response, processor: BaseProcessor, err: unknown): void {
  const name = escapeHtml(processor.descriptor.displayName);
  const esp = processor.descriptor.id;
  if (err instanceof InvalidCredentialsError) {
    return failure(
      res,
      400,
      `${processor.descriptor.displayName} did not accept the credentials`,
      `${name} said the key or authorization is not valid. Check that you copied the whole key, that it is still active, and try again.`,
      esp,
    );
  }
  if (err instanceof RateLimitedError || err instanceof TransientError) {
    return failure(
      res,
      502,
      `${processor.descriptor.displayName} is not answering`,
      `We could not reach ${name} just now. Nothing was connected. Please try again in a few minutes.`,
      esp,
    );
  }
  if (err instanceof ConnectError && err.code === 'account_mismatch') {
    return failure(
      res,
      400,
      'That is another account',
      'The account you signed in with is not the one this link re-authorizes. Sign in with the original account.',
      esp,
    );
  }
  if (err instanceof ConnectError || err instanceof RequestRejectedError) {
    return failure(
      res,
      400,
      'That did not work',
      `${name} refused the request. Nothing was connected. Please start again.`,
      esp,
    );
  }
  if (err instanceof NotFoundError) return unknownConfiguration(res, esp);
  throw err;
}
