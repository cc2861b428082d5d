// What each Sandbox account is set to: its limits, page and batch sizes, faults and token rules.

/** One limit the Sandbox enforces; 0 = none. */
export interface RequestLimit {
  /** Requests per second, counted in a sliding window of `windowSeconds` (default 1). */
  requestsPerSecond: number;
  /** Requests in flight. */
  concurrency: number;
  /** Length of the sliding window: 10 allows 10 x requestsPerSecond in any 10 s, bursts included. */
  windowSeconds?: number;
}

/** Per account: one limit every API request counts against, and the contact endpoints' own. */
export interface SandboxLimits extends RequestLimit {
  /** Contact pages (GET /v1/lists/:list/contacts). */
  listing?: RequestLimit;
  /** Batch updates (POST /v1/lists/:list/contacts/batch). */
  writing?: RequestLimit;
}

export interface SandboxFaults {
  /** Added to every API response, in milliseconds: the mean when latencySigma is set. */
  latencyMs: number;
  /** Spread of a log-normal latency around latencyMs (0 = every response takes latencyMs). */
  latencySigma: number;
  /** Share of API requests answered 500 or 503. */
  errorRate: number;
  /** Share of API requests answered 429 with Retry-After regardless of load. */
  rateLimitRate: number;
  /** Share of API requests never answered (the client times out). */
  timeoutRate: number;
  /** Share of rows in a batch update rejected with a per-row error. */
  rowRejectRate: number;
}

export interface AccountSettings {
  /** The real ESP whose limits, page and batch sizes the account imitates (src/sandbox/profiles.ts). */
  profile?: string;
  limits: SandboxLimits;
  /** Most contacts one listing page may ask for. */
  pageSize: number;
  /** Most updates one batch may carry. */
  batchSize: number;
  faults: SandboxFaults;
  /** Lifetime of OAuth access tokens issued for this account. */
  tokenLifetimeSeconds: number;
  /**
   * A refresh token that was already rotated, presented again, revokes its whole grant (every
   * access and refresh token issued from one consent), as OAuth 2.0 Security BCP (RFC 9700 4.14) asks.
   */
  refreshTokenReuseDetection: boolean;
}

export const defaultSettings = (): AccountSettings => ({
  limits: { requestsPerSecond: 0, concurrency: 0 },
  pageSize: 1000,
  batchSize: 500,
  faults: { latencyMs: 0, latencySigma: 0, errorRate: 0, rateLimitRate: 0, timeoutRate: 0, rowRejectRate: 0 },
  tokenLifetimeSeconds: 3600,
  refreshTokenReuseDetection: true,
});
