import { randomBytes } from 'node:crypto';
import type { EspMetrics } from '../metrics';
import type { SecretStore } from '../storage';
import { InvalidCredentialsError, RequestRejectedError, sanitize } from './errors';
import { EspHttp, type EspRequest, type EspResponse, type SendOptions } from './http';
import { isValue, redactContactIds } from './kit/values';
import { shapeChecked } from './kit/shape';
import { consentUrl, OAuthTokens } from './oauth-tokens';
import { fieldNameUnder } from './kit/field-name';
import { writeIsolatingBadRows } from './kit/isolate-rows';
import { retryingTransient } from './kit/quick-retry';
import { ProcessPacing, type AccountLimits, type AccountPacing } from './pacing';
import type { RefreshLeases } from './refresh-leases';
import type {
  AccountInfo,
  ContactPage,
  ContactResult,
  ContactUpdate,
  Credentials,
  ListMode,
  MaintenanceReport,
  OAuthDescriptor,
  ProcessorDescriptor,
  ProcessorTarget,
} from './types';

export interface ProcessorDeps {
  secrets: SecretStore;
  metrics?: EspMetrics;
  http?: EspHttp;
  /** Pacing when the caller brings none (tests of processors, the CLI): per process. */
  pacers?: ProcessPacing;
  /** One OAuth refresh per grant across processes; without it (tests of processors), per process only. */
  refreshLeases?: RefreshLeases;
  now?: () => number;
}

/** A request function bound to one set of credentials, one ESP account's pacer and base URL. */
export type EspCall = (<T = unknown>(
  request: EspRequest,
  options?: Pick<SendOptions, 'rowsFromError' | 'retryAfterFromBody'> & {
    /** The descriptor's extra limit this request also counts against (e.g. HubSpot's `search`). */
    limit?: string;
  },
) => Promise<EspResponse<T>>) & {
  /** The activity's cancellation, for waits between requests (a job's polls). */
  readonly signal?: AbortSignal;
};

/** fetchContactPage's arguments, for ESPs to take as `...[call, target, cursor, mode]: ListingArgs`. */
export type ListingArgs = [
  call: EspCall,
  target: ProcessorTarget,
  cursor: string | undefined,
  mode: ListMode,
];
/** sendBatch's arguments, for ESPs to take as `...[call, target, batch]: UpdateArgs`. */
export type UpdateArgs = [call: EspCall, target: ProcessorTarget, batch: ContactUpdate[]];

/**
 * What every ESP shares: credentials from the secret store with single-flight OAuth refresh,
 * the web flow's auth requests, daily maintenance, field naming, pacing, batching, and isolating
 * bad rows. An ESP extends it with its descriptor and the five ESP-specific calls below.
 */
export abstract class BaseProcessor {
  abstract readonly descriptor: ProcessorDescriptor;

  protected readonly http: EspHttp;
  private readonly pacers: ProcessPacing;
  private readonly tokens: OAuthTokens;

  constructor(protected readonly deps: ProcessorDeps) {
    this.http = deps.http ?? new EspHttp();
    this.pacers =
      deps.pacers ?? new ProcessPacing((esp, ms) => deps.metrics?.rateLimitWait.inc({ esp }, ms / 1000));
    this.tokens = new OAuthTokens({
      secrets: deps.secrets,
      refreshLeases: deps.refreshLeases,
      http: this.http,
      now: deps.now ?? Date.now,
      oauth: () => this.oauth(),
    });
  }

  // ---- implemented by each ESP ----

  /** Default API base URL; a configuration may override it (data centers, regions). */
  protected abstract baseUrl(target?: Pick<ProcessorTarget, 'apiBaseUrl'>): string;
  /** Checks the credentials with a cheap call and describes the account. */
  protected abstract validateCredentials(call: EspCall, credentials: Credentials): Promise<AccountInfo>;
  /** Makes sure the custom field exists, creating it when missing (a 409 on create counts as existing). */
  protected abstract ensureField(call: EspCall, target: ProcessorTarget): Promise<'exists' | 'created'>;
  /** One page of contacts whose field is empty (`incremental`) or of every contact (`full`). */
  protected abstract fetchContactPage(...args: ListingArgs): Promise<ContactPage>;
  /**
   * ESPs that list through an export job start it here and answer the cursor that reads it, so
   * the job can be saved before it is read (a retry reads the same job). Default: no job.
   */
  protected async startExportJob(
    _call: EspCall,
    _target: ProcessorTarget,
    _mode: ListMode,
  ): Promise<string | undefined> {
    return undefined;
  }
  /** Writes one batch (at most maxBatchSize); one result per contact, in any order. */
  protected abstract sendBatch(...args: UpdateArgs): Promise<ContactResult[]>;

  /** Auth headers for a request. Default: bearer token / key; ESPs with other schemes override. */
  protected authHeaders(credentials: Credentials): Record<string, string> {
    return {
      authorization: `Bearer ${credentials.kind === 'oauth2' ? credentials.accessToken : credentials.apiKey}`,
    };
  }

  // ---- what the rest of espresso calls ----

  /** The custom field's name under this ESP's rules. */
  fieldName(base = 'lcee'): string {
    return fieldNameUnder(this.descriptor, base);
  }

  /**
   * Daily maintenance: valid (refreshed when near expiry) credentials, then the field. A dry run
   * only reads: when the field is missing it says it would create it (`would_create`).
   */
  async maintain(
    target: ProcessorTarget,
    options: {
      dryRun?: boolean;
      pacing?: AccountPacing;
      /** freshCredentials, called just before (while the caller looked at its lock). */
      credentials?: ReturnType<BaseProcessor['freshCredentials']>;
    } = {},
  ): Promise<MaintenanceReport> {
    const { credentials, refreshed } = await (options.credentials ?? this.freshCredentials(target));
    const call = this.callFor(target, options.pacing);
    await shapeChecked(() => this.validateCredentials(call, credentials));
    const fieldCall: EspCall = options.dryRun
      ? (request, opts) => {
          if (request.method !== 'GET') throw new WouldWrite();
          return call(request, opts);
        }
      : call;
    const field = await shapeChecked(() => this.ensureField(fieldCall, target)).catch((err: unknown) => {
      if (err instanceof WouldWrite) return 'would_create' as const;
      // 409: a concurrent run created the field between this run's read and write.
      if (err instanceof RequestRejectedError && err.status === 409) return 'exists' as const;
      throw err;
    });
    return { credentials: refreshed ? 'refreshed' : 'valid', field, fieldName: target.fieldName };
  }

  /**
   * The credentials as the store holds them now, never what this process read earlier (refreshed
   * when near expiry): what the daily check validates.
   */
  freshCredentials(target: ProcessorTarget): Promise<{ credentials: Credentials; refreshed: boolean }> {
    return this.tokens.current(target, { fresh: true });
  }

  listPage(
    target: ProcessorTarget,
    cursor: string | undefined,
    mode: ListMode,
    pacing?: AccountPacing,
  ): Promise<ContactPage> {
    return shapeChecked(() => this.fetchContactPage(this.callFor(target, pacing), target, cursor, mode));
  }

  /**
   * When the ESP pages by offset in this mode, the cursor of the page after the one at `cursor`
   * (undefined: the first page), known before that page answers: the export then asks for a
   * page while the one before is still on its way (src/activities/export-listing.ts). Undefined
   * when each page names the next (cursor chains, export jobs): those are asked one at a time.
   * Undefined too past `total`, the list's size as the last page answered said (ContactPage.total).
   */
  pageAfter(_cursor: string | undefined, _mode: ListMode, _total?: number): string | undefined {
    return undefined;
  }

  /**
   * The cursor of a listing's first page when the ESP lists through an export job (started now);
   * undefined otherwise. Pass it to listPage.
   */
  startListing(target: ProcessorTarget, mode: ListMode, pacing?: AccountPacing): Promise<string | undefined> {
    return shapeChecked(() => this.startExportJob(this.callFor(target, pacing), target, mode));
  }

  /** The ESP account's limits, from the descriptor: what leases divide between callers. */
  limits(): AccountLimits {
    const d = this.descriptor;
    return {
      concurrency: d.concurrency,
      rate: d.rateLimit,
      ...(d.limits ? { extra: d.limits } : {}),
      ...(d.listPageSize ? { sizes: { page: d.listPageSize, batch: d.maxBatchSize } } : {}),
    };
  }

  /**
   * Writes values in ESP-sized batches. Returns one result per input contact, in input order.
   * Rows with invalid values are rejected without a request; when the ESP rejects a whole batch,
   * the bad rows are isolated (the ESP's row pointers, else bisection) and the rest written.
   * When a batch fails (a 429, an ESP error), it throws that failure: see writeBatches.
   */
  async writeValues(
    target: ProcessorTarget,
    updates: ContactUpdate[],
    pacing?: AccountPacing,
  ): Promise<ContactResult[]> {
    const { results, stopped } = await this.writeBatches(target, updates, pacing);
    if (stopped !== undefined) throw stopped;
    return results;
  }

  /**
   * writeValues that says how far it got when a batch fails (a 429, an ESP error): the batches not
   * sent yet are not sent (the caller retries, and requests of a failed call sent beside the
   * retry's would take more than the caller's share of the account's limits), `stopped` is the
   * first failure, and `results` the results of the longest run of `updates` from the first whose
   * batches were all answered (rows rejected without a request count as answered): the caller
   * need not send those again. `ahead`: the results of the batches after that run that were
   * answered all the same (sent beside the one that failed), which the caller need not send again
   * either. `stop` aborting stops it the same way: the batches not sent yet are not sent.
   */
  async writeBatches(
    target: ProcessorTarget,
    updates: ContactUpdate[],
    pacing?: AccountPacing,
    stop?: AbortSignal,
  ): Promise<{ results: ContactResult[]; stopped?: unknown; ahead?: ContactResult[] }> {
    const failed = new AbortController();
    if (stop?.aborted) failed.abort(stop.reason);
    stop?.addEventListener('abort', () => failed.abort(stop.reason), { once: true });
    const call = this.callFor(target, pacing, failed.signal);
    const results = new Map<string, ContactResult>();
    const valid: ContactUpdate[] = [];
    for (const u of updates) {
      if (isValue(u.value)) valid.push(u);
      else results.set(u.contactId, { contactId: u.contactId, status: 'rejected', reason: 'invalid value' });
    }
    const size = this.descriptor.maxBatchSize;
    const batches: ContactUpdate[][] = [];
    for (let i = 0; i < valid.length; i += size) batches.push(valid.slice(i, i + size));
    const failures: unknown[] = [];
    const unanswered = new Set<number>();
    // Every batch settles (answered, or stopped before it was sent) before the call ends.
    const written = await Promise.all(
      batches.map((batch, i) =>
        writeIsolatingBadRows(batch, (rows) => this.sendBatch(call, target, rows)).catch((error) => {
          failures.push(error);
          unanswered.add(i);
          failed.abort();
          return [];
        }),
      ),
    );
    // Reasons end up in results files and summaries: no emails, credentials or contact ids (which
    // are emails for some ESPs, in forms the email pattern may miss) in them.
    for (const r of written.flat()) {
      const reason = r.status === 'rejected' ? sanitize(redactContactIds(r.reason, [r.contactId])) : '';
      results.set(r.contactId, r.status === 'rejected' ? { ...r, reason } : r);
    }
    // The first failure is the cause; later ones are batches it stopped, or the same trouble again.
    if (!failures.length) return { results: updates.map((u) => results.get(u.contactId)!) };
    const firstUnsent = updates.indexOf(batches[Math.min(...unanswered)]![0]!);
    const answered = updates.slice(0, firstUnsent);
    const ahead = updates.slice(firstUnsent).flatMap((u) => results.get(u.contactId) ?? []);
    return {
      results: answered.map((u) => results.get(u.contactId)!),
      stopped: failures[0],
      ...(ahead.length ? { ahead } : {}),
    };
  }

  // ---- web flow ----

  /** The ESP's consent URL; with PKCE when the ESP supports it, for `codeVerifier` (default: a random one). */
  authorizationRequest(
    redirectUri: string,
    state: string,
    codeVerifier = randomBytes(32).toString('base64url'),
  ): { url: string; codeVerifier?: string } {
    return consentUrl(this.oauth(), redirectUri, state, codeVerifier);
  }

  /** Exchanges the authorization code and validates the tokens it gives. */
  async completeAuthorization(
    code: string,
    redirectUri: string,
    codeVerifier?: string,
  ): Promise<{ credentials: Credentials; account: AccountInfo }> {
    const credentials = await this.tokens.tokenRequest({
      grant_type: 'authorization_code',
      code,
      redirect_uri: redirectUri,
      ...(codeVerifier ? { code_verifier: codeVerifier } : {}),
    });
    return {
      credentials,
      account: await shapeChecked(() =>
        this.validateCredentials(this.callWith(credentials, this.baseUrl()), credentials),
      ),
    };
  }

  /**
   * Asks the ESP whether a configuration's stored credentials still work (refreshing an OAuth
   * token near expiry first): InvalidCredentialsError when they do not.
   */
  async verifyCredentials(target: ProcessorTarget): Promise<AccountInfo> {
    const { credentials } = await this.tokens.current(target, { fresh: true });
    return shapeChecked(() => this.validateCredentials(this.callFor(target), credentials));
  }

  /** Validates an API key the way the web form and `espresso connect` both do. */
  async connectWithApiKey(apiKey: string): Promise<{ credentials: Credentials; account: AccountInfo }> {
    const label = this.descriptor.apiKey?.label;
    if (!label) throw new Error(`${this.descriptor.id} connects with OAuth, not a key`);
    const key = apiKey.trim();
    if (!key) throw new RequestRejectedError(`${label} is empty`);
    const credentials: Credentials = { kind: 'apiKey', apiKey: key };
    return {
      credentials,
      account: await shapeChecked(() =>
        this.validateCredentials(this.callWith(credentials, this.baseUrl()), credentials),
      ),
    };
  }

  // ---- credentials ----

  /**
   * The stored credentials, refreshed first when an OAuth access token expires within the margin.
   * Refresh is single-flight per configuration and the rotated tokens are saved before use.
   */
  credentials(
    target: ProcessorTarget,
    signal?: AbortSignal,
  ): Promise<{ credentials: Credentials; refreshed: boolean }> {
    return this.tokens.current(target, { signal });
  }

  private oauth(): OAuthDescriptor {
    if (!this.descriptor.oauth2) throw new Error(`${this.descriptor.id} does not use OAuth`);
    return this.descriptor.oauth2;
  }

  // ---- requests ----

  /**
   * Requests for a stored configuration, paced by the caller's share of the ESP account (a lease),
   * or per process without one; none is sent once `stopped` is aborted. On a 401 with OAuth
   * credentials the tokens are refreshed once (single-flight) and the request retried once.
   */
  private callFor(target: ProcessorTarget, pacing?: AccountPacing, stopped?: AbortSignal): EspCall {
    const account =
      pacing ??
      this.pacers.of({ esp: this.descriptor.id, accountId: target.espAccountId, limits: this.limits() });
    const base = this.baseUrl(target);
    const { signal } = account;
    const call: EspCall = async (request, { limit, ...options } = {}) => {
      const pacer = {
        // Once `stopped`, a request is not sent, and one waiting for its turn (a 429's pause:
        // 15 minutes on HubSpot's daily limit) ends at once.
        run: <T>(fn: () => Promise<T>) =>
          account.run(
            () => {
              stopped?.throwIfAborted();
              return fn();
            },
            limit,
            stopped,
          ),
        pause: (ms: number) => account.pause(ms),
      };
      let { credentials } = await this.credentials(target, signal);
      try {
        return await retryingTransient(() =>
          this.send(credentials, base, request, { ...options, pacer, signal }),
        );
      } catch (err) {
        if (!(err instanceof InvalidCredentialsError)) throw err;
        let refused: unknown = err;
        // Credentials read a while ago (CREDENTIALS_REUSE_MS) may have been replaced since: a
        // reconnect, another process's refresh. The stored ones are tried before any refresh.
        const latest = await this.tokens.loadCredentials(target);
        if (JSON.stringify(latest) !== JSON.stringify(credentials)) {
          credentials = latest;
          try {
            return await this.send(credentials, base, request, { ...options, pacer, signal });
          } catch (again) {
            if (!(again instanceof InvalidCredentialsError)) throw again;
            refused = again;
          }
        }
        if (credentials.kind !== 'oauth2' || !credentials.refreshToken) throw refused;
        const fresh = await this.tokens.refresh(target, credentials, signal);
        return this.send(fresh, base, request, { ...options, pacer, signal });
      }
    };
    return Object.assign(call, { signal });
  }

  /** Requests with credentials that are not stored yet (connect flow), unpaced. */
  private callWith(credentials: Credentials, base: string): EspCall {
    return (request, options) => this.send(credentials, base, request, options ?? {});
  }

  private send<T>(credentials: Credentials, base: string, request: EspRequest, options: SendOptions) {
    const secrets =
      credentials.kind === 'oauth2'
        ? [credentials.accessToken, credentials.refreshToken ?? '']
        : [credentials.apiKey];
    return this.http.send<T>(
      {
        ...request,
        url: /^https?:\/\//.test(request.url) ? request.url : `${base}${request.url}`,
        headers: { ...this.authHeaders(credentials), ...request.headers },
      },
      { ...options, secrets, esp: this.descriptor.id },
    );
  }
}

/** A dry run's maintenance reached a write (every ESP reads the field with GET, creates it otherwise). */
class WouldWrite extends Error {}
