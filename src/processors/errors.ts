// Every ESP outcome that is not a success becomes one of these, here and nowhere else. Retry
// decisions come from the class: activities never parse messages.

export type EspErrorKind = 'invalid_credentials' | 'rate_limited' | 'transient' | 'rejected';

export abstract class EspError extends Error {
  abstract readonly kind: EspErrorKind;
  abstract readonly retryable: boolean;
  constructor(
    message: string,
    readonly status?: number,
  ) {
    super(message);
  }
}

/** 401/403, `invalid_grant`: a person must re-authorize. Never retried. */
export class InvalidCredentialsError extends EspError {
  override name = 'InvalidCredentialsError';
  readonly kind = 'invalid_credentials';
  readonly retryable = false;
}

/** 429: retry after `retryAfterMs` (from Retry-After or the ESP's reset header). */
export class RateLimitedError extends EspError {
  override name = 'RateLimitedError';
  readonly kind = 'rate_limited';
  readonly retryable = true;
  constructor(
    message: string,
    readonly retryAfterMs: number,
  ) {
    super(message, 429);
  }
}

/** 5xx, timeouts, connection resets, malformed responses: retried with backoff. */
export class TransientError extends EspError {
  override name = 'TransientError';
  readonly kind = 'transient';
  readonly retryable = true;
}

/** 4xx validation: the request itself is wrong. Never retried. `rows` points at offending batch rows. */
export class RequestRejectedError extends EspError {
  override name = 'RequestRejectedError';
  readonly kind = 'rejected';
  readonly retryable = false;
  constructor(
    message: string,
    status?: number,
    readonly rows?: number[],
  ) {
    super(message, status);
  }
}

const DEFAULT_RETRY_AFTER_MS = 1_000;
/** The longest delay espresso waits on an ESP's word (a daily limit waits this long). */
export const MAX_RETRY_AFTER_MS = 15 * 60_000;

export interface HttpOutcome {
  status: number;
  headers: Record<string, string | undefined>;
  /** Parsed JSON body, or undefined when the body was not JSON. */
  body: unknown;
  /** Raw body text, for error reasons when the body was not JSON. */
  text: string;
}

/**
 * Maps a non-2xx response to a typed error. `reason` is what the ESP said, already sanitized.
 * `now` is injectable for HTTP-date Retry-After values.
 */
export function errorFromResponse(
  outcome: HttpOutcome,
  reason: string,
  options: { rows?: number[]; now?: number; retryAfterMs?: number } = {},
): EspError {
  const { status } = outcome;
  const what = `ESP answered ${status}`;
  if (status === 429) {
    return new RateLimitedError(
      `${what} (rate limited): ${reason}`,
      options.retryAfterMs ?? retryAfterMs(outcome.headers, options.now),
    );
  }
  if (status === 401 || status === 403 || isInvalidGrant(outcome.body)) {
    return new InvalidCredentialsError(`${what} (credentials not accepted): ${reason}`, status);
  }
  if (status >= 500 || status === 408) return new TransientError(`${what} (server error): ${reason}`, status);
  return new RequestRejectedError(`${what} (request rejected): ${reason}`, status, options.rows);
}

function isInvalidGrant(body: unknown): boolean {
  return typeof body === 'object' && body !== null && (body as { error?: unknown }).error === 'invalid_grant';
}

/** Delay from `Retry-After` (seconds or HTTP date), else the common reset headers, else 1 s. */
export function retryAfterMs(headers: Record<string, string | undefined>, now = Date.now()): number {
  const clamp = (ms: number) => Math.min(MAX_RETRY_AFTER_MS, Math.max(0, Math.ceil(ms)));
  const retryAfter = headers['retry-after']?.trim();
  if (retryAfter) {
    if (/^\d+(\.\d+)?$/.test(retryAfter)) return clamp(Number(retryAfter) * 1000);
    const date = Date.parse(retryAfter);
    if (!Number.isNaN(date)) return clamp(date - now);
  }
  // Seconds until the window resets (IETF RateLimit-Reset, X-RateLimit-Reset as a delta; Brevo's
  // x-sib-ratelimit-reset, its only delay on a 429).
  for (const name of ['ratelimit-reset', 'x-ratelimit-reset', 'x-sib-ratelimit-reset']) {
    const value = Number(headers[name]);
    if (Number.isFinite(value) && value > 0) {
      // Some ESPs send an epoch timestamp in seconds here instead of a delta.
      return clamp(value > 1e9 ? value * 1000 - now : value * 1000);
    }
  }
  return DEFAULT_RETRY_AFTER_MS;
}

/** Network-level failures (no HTTP answer) are transient. */
export function errorFromNetwork(code: string | undefined, timeoutMs: number): TransientError {
  if (code === 'ECONNABORTED' || code === 'ETIMEDOUT' || code === 'ERR_CANCELED') {
    return new TransientError(`ESP did not answer within ${timeoutMs} ms`);
  }
  return new TransientError(`ESP connection failed (${code ?? 'unknown network error'})`);
}

/**
 * Anything that looks like an address: a word with an `@` (or its URL encoding) and something after
 * it. Wider than valid addresses on purpose: the rows ESPs reject are mostly the mistyped ones
 * (`john@gmail`, `jane%40example.com`, `info@bücher.de`, `sean.o'brien@...`), and hiding a word too
 * many costs nothing.
 */
const EMAIL = /[^\s<>(){}`,;:]*(?:@|%40)[^\s<>(){}`,;:]+/giu;
const BEARER = /\b(Bearer|Basic|Klaviyo-API-Key)\s+[A-Za-z0-9._~+/=-]+/gi;

/**
 * Makes ESP-provided text safe for messages and logs: emails and auth header values removed,
 * known secrets (tokens, keys) removed wherever they appear, length bounded.
 */
export function sanitize(text: string, secrets: readonly string[] = []): string {
  let out = text;
  for (const secret of secrets) if (secret && secret.length >= 6) out = out.split(secret).join('[redacted]');
  return out
    .replace(BEARER, '$1 [redacted]')
    .replace(EMAIL, '[email]')
    .replace(/\s+/g, ' ')
    .trim()
    .slice(0, 300);
}
