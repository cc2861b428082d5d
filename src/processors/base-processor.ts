import { createHash, randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { EspMetrics } from '../metrics';
import { NotFoundError, type SecretStore } from '../storage';
import { InvalidCredentialsError, RequestRejectedError, sanitize, TransientError } from './errors';
import { EspHttp, type EspRequest, type EspResponse, type SendOptions } from './http';
import { ProcessPacing, type AccountLimits, type AccountPacing } from './pacing';
import { RefreshLeases } from './refresh-leases';
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
export type EspCall = <T = unknown>(
  request: EspRequest,
  options?: Pick<SendOptions, 'rowsFromError' | 'retryAfterFromBody'> & {
    /** The descriptor's extra limit this request also counts against (e.g. HubSpot's `search`). */
    limit?: string;
  },
) => Promise<EspResponse<T>>;

/** A process that finds another refreshing the grant looks for its saved tokens this often… */
const REFRESH_POLL_MS = 200;
/** …for at most this long (past the lease's own expiry, when it takes the lease itself). */
const REFRESH_WAIT_MS = 60_000;

/** In-process retries of transient ESP errors before the activity's own retry policy takes over. */
const QUICK_RETRIES = 2;

/** The value espresso writes: 128 random bits, base64url. Anything else is refused before the ESP. */
const VALUE = /^[A-Za-z0-9_-]{16,64}$/;

/**
 * What every ESP shares: credentials from the secret store with single-flight OAuth refresh,
 * the web flow's auth requests, daily maintenance, field naming, pacing, batching, and isolating
 * bad rows. An ESP extends it with its descriptor and the five ESP-specific calls below.
 */
export abstract class BaseProcessor {
  abstract readonly descriptor: ProcessorDescriptor;

  protected readonly http: EspHttp;
  private readonly pacers: ProcessPacing;
  private readonly now: () => number;
  private readonly refreshing = new Map<string, Promise<Credentials>>();

  constructor(protected readonly deps: ProcessorDeps) {
    this.http = deps.http ?? new EspHttp();
    this.pacers =
      deps.pacers ?? new ProcessPacing((esp, ms) => deps.metrics?.rateLimitWait.inc({ esp }, ms / 1000));
    this.now = deps.now ?? Date.now;
  }

  // ---- implemented by each ESP ----

  /** Default API base URL; a configuration may override it (data centers, regions). */
  protected abstract baseUrl(target?: Pick<ProcessorTarget, 'apiBaseUrl'>): string;
  /** Checks the credentials with a cheap call and describes the account. */
  protected abstract validateCredentials(call: EspCall, credentials: Credentials): Promise<AccountInfo>;
  /** Makes sure the custom field exists, creating it when missing (a 409 on create counts as existing). */
  protected abstract ensureField(call: EspCall, target: ProcessorTarget): Promise<'exists' | 'created'>;
  /** One page of contacts whose field is empty (`incremental`) or of every contact (`full`). */
  protected abstract listContactsNeedingValue(
    call: EspCall,
    target: ProcessorTarget,
    cursor: string | undefined,
    mode: ListMode,
  ): Promise<ContactPage>;
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
  protected abstract updateContacts(
    call: EspCall,
    target: ProcessorTarget,
    batch: ContactUpdate[],
  ): Promise<ContactResult[]>;

  /** Auth headers for a request. Default: bearer token / key; ESPs with other schemes override. */
  protected authHeaders(credentials: Credentials): Record<string, string> {
    return {
      authorization: `Bearer ${credentials.kind === 'oauth2' ? credentials.accessToken : credentials.apiKey}`,
    };
  }

  // ---- what the rest of espresso calls ----

  /** The custom field's name under this ESP's rules. */
  fieldName(base = 'lcee'): string {
    const { field } = this.descriptor;
    const cased =
      field.case === 'upper' ? base.toUpperCase() : field.case === 'lower' ? base.toLowerCase() : base;
    const name = [...cased]
      .filter((c) => field.allowed.test(c))
      .join('')
      .slice(0, field.maxLength);
    if (!name)
      throw new Error(`field name ${JSON.stringify(base)} has no character ${this.descriptor.id} allows`);
    return name;
  }

  /**
   * Daily maintenance: valid (refreshed when near expiry) credentials, then the field. A dry run
   * only reads: when the field is missing it says it would create it (`would_create`).
   */
  async maintain(
    target: ProcessorTarget,
    options: { dryRun?: boolean; pacing?: AccountPacing } = {},
  ): Promise<MaintenanceReport> {
    const { credentials, refreshed } = await this.credentials(target);
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

  listPage(
    target: ProcessorTarget,
    cursor: string | undefined,
    mode: ListMode,
    pacing?: AccountPacing,
  ): Promise<ContactPage> {
    return shapeChecked(() =>
      this.listContactsNeedingValue(this.callFor(target, pacing), target, cursor, mode),
    );
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
    return { concurrency: d.concurrency, rate: d.rateLimit, ...(d.limits ? { extra: d.limits } : {}) };
  }

  /**
   * Writes values in ESP-sized batches. Returns one result per input contact, in input order.
   * Rows with invalid values are rejected without a request; when the ESP rejects a whole batch,
   * the bad rows are isolated (the ESP's row pointers, else bisection) and the rest written.
   */
  async writeValues(
    target: ProcessorTarget,
    updates: ContactUpdate[],
    pacing?: AccountPacing,
  ): Promise<ContactResult[]> {
    const call = this.callFor(target, pacing);
    const results = new Map<string, ContactResult>();
    const valid: ContactUpdate[] = [];
    for (const u of updates) {
      if (typeof u.value === 'string' && VALUE.test(u.value)) valid.push(u);
      else results.set(u.contactId, { contactId: u.contactId, status: 'rejected', reason: 'invalid value' });
    }
    const size = this.descriptor.maxBatchSize;
    const batches: ContactUpdate[][] = [];
    for (let i = 0; i < valid.length; i += size) batches.push(valid.slice(i, i + size));
    const written = await Promise.all(batches.map((batch) => this.updateIsolating(call, target, batch)));
    // Reasons end up in results files and summaries: no emails, credentials or contact ids (which
    // are emails for some ESPs, in forms the email pattern may miss) in them.
    for (const r of written.flat()) {
      const reason = r.status === 'rejected' ? sanitize(r.reason.split(r.contactId).join('[contact]')) : '';
      results.set(r.contactId, r.status === 'rejected' ? { ...r, reason } : r);
    }
    return updates.map((u) => results.get(u.contactId)!);
  }

  // ---- web flow ----

  /** The ESP's consent URL; with PKCE when the ESP supports it, for `codeVerifier` (default: a random one). */
  authorizationRequest(
    redirectUri: string,
    state: string,
    codeVerifier = randomBytes(32).toString('base64url'),
  ): { url: string; codeVerifier?: string } {
    const auth = this.oauth();
    const url = new URL(auth.authorizeUrl);
    url.searchParams.set('response_type', 'code');
    url.searchParams.set('client_id', auth.clientId);
    url.searchParams.set('redirect_uri', redirectUri);
    url.searchParams.set('state', state);
    if (auth.scopes.length) url.searchParams.set('scope', auth.scopes.join(' '));
    if (!auth.pkce) return { url: url.toString() };
    url.searchParams.set('code_challenge', createHash('sha256').update(codeVerifier).digest('base64url'));
    url.searchParams.set('code_challenge_method', 'S256');
    return { url: url.toString(), codeVerifier };
  }

  /** Exchanges the authorization code and validates the tokens it gives. */
  async completeAuthorization(
    code: string,
    redirectUri: string,
    codeVerifier?: string,
  ): Promise<{ credentials: Credentials; account: AccountInfo }> {
    const credentials = await this.tokenRequest({
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
    const { credentials } = await this.credentials(target);
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
  async credentials(target: ProcessorTarget): Promise<{ credentials: Credentials; refreshed: boolean }> {
    const stored = await this.loadCredentials(target);
    if (stored.kind !== 'oauth2' || !this.expiring(stored)) return { credentials: stored, refreshed: false };
    return { credentials: await this.refresh(target, stored), refreshed: true };
  }

  /**
   * New tokens for `stale` (expiring, or refused with a 401). One refresh per grant at a time:
   * per process through `refreshing`, across processes through a lease in the blob store. A process
   * that finds the lease taken waits for the tokens its holder saves.
   */
  private refresh(target: ProcessorTarget, stale: Credentials): Promise<Credentials> {
    const key = target.credentialsSecretId;
    const inFlight = this.refreshing.get(key);
    if (inFlight) return inFlight;
    const refresh = (async () => {
      const leases = this.deps.refreshLeases;
      const holder = RefreshLeases.holder();
      const waitUntil = this.now() + REFRESH_WAIT_MS;
      for (;;) {
        // Another process may have refreshed since `stale` was read: use its tokens.
        const latest = await this.loadCredentials(target);
        if (latest.kind !== 'oauth2' || this.renewed(stale, latest)) return latest;
        if (!leases) return await this.refreshGrant(target, latest);
        if (await leases.take(key, holder)) {
          try {
            // The previous holder may have saved new tokens just before giving the lease back.
            const current = await this.loadCredentials(target);
            if (current.kind !== 'oauth2' || this.renewed(stale, current)) return current;
            return await this.refreshGrant(target, current);
          } finally {
            await leases.release(key, holder).catch(() => undefined); // it expires on its own
          }
        }
        if (this.now() > waitUntil) {
          throw new TransientError('another process has been refreshing the OAuth tokens for too long');
        }
        await sleep(REFRESH_POLL_MS);
      }
    })().finally(() => this.refreshing.delete(key));
    this.refreshing.set(key, refresh);
    return refresh;
  }

  /**
   * Presents the stored refresh token and saves the rotated tokens before they are used. When the
   * ESP refuses it, the stored grant is read again: tokens another process saved meanwhile are
   * used; only a refusal of the grant still stored means the publisher must reconnect.
   */
  private async refreshGrant(
    target: ProcessorTarget,
    latest: Extract<Credentials, { kind: 'oauth2' }>,
  ): Promise<Credentials> {
    if (!latest.refreshToken) {
      throw new InvalidCredentialsError('the access token expired and there is no refresh token');
    }
    let next: Credentials;
    try {
      next = await this.tokenRequest({ grant_type: 'refresh_token', refresh_token: latest.refreshToken });
    } catch (err) {
      if (err instanceof InvalidCredentialsError) {
        const after = await this.loadCredentials(target);
        const grant = (c: Credentials) => (c.kind === 'oauth2' ? `${c.accessToken} ${c.refreshToken}` : '');
        if (grant(after) !== grant(latest)) return after;
      }
      throw err;
    }
    const merged: Credentials =
      next.kind === 'oauth2' ? { ...next, refreshToken: next.refreshToken ?? latest.refreshToken } : next;
    await this.deps.secrets.put(target.credentialsSecretId, JSON.stringify(merged));
    return merged;
  }

  /** `latest` holds other tokens than `stale`, good for a while yet. */
  private renewed(stale: Credentials, latest: Credentials): boolean {
    return (
      stale.kind === 'oauth2' &&
      latest.kind === 'oauth2' &&
      latest.accessToken !== stale.accessToken &&
      !this.expiring(latest)
    );
  }

  /** Within the refresh margin of its expiry (half its lifetime, for tokens shorter than twice the margin). */
  private expiring(credentials: Credentials): boolean {
    if (credentials.kind !== 'oauth2' || credentials.expiresAt === undefined) return false;
    const lifetime =
      credentials.issuedAt === undefined ? Infinity : credentials.expiresAt - credentials.issuedAt;
    return credentials.expiresAt - this.now() < Math.min(this.oauth().refreshMarginMs, lifetime / 2);
  }

  private async loadCredentials(target: ProcessorTarget): Promise<Credentials> {
    let raw: string;
    try {
      raw = await this.deps.secrets.get(target.credentialsSecretId);
    } catch (err) {
      if (err instanceof NotFoundError) throw new InvalidCredentialsError('no credentials are stored');
      throw err;
    }
    return JSON.parse(raw) as Credentials;
  }

  private async tokenRequest(form: Record<string, string>): Promise<Credentials> {
    const auth = this.oauth();
    const res = await this.http.send<Record<string, unknown>>(
      {
        method: 'POST',
        url: auth.tokenUrl,
        form: { ...form, client_id: auth.clientId, client_secret: auth.clientSecret },
      },
      { secrets: [auth.clientSecret, ...Object.values(form)] },
    );
    const body = res.body ?? {};
    if (typeof body.access_token !== 'string' || !body.access_token) {
      throw new TransientError('the token endpoint answered without an access token');
    }
    const issuedAt = this.now();
    // `expires_in: 0` (Mailchimp) means the token does not expire.
    const expires = typeof body.expires_in === 'number' && body.expires_in > 0;
    return {
      kind: 'oauth2',
      accessToken: body.access_token,
      refreshToken: typeof body.refresh_token === 'string' ? body.refresh_token : undefined,
      ...(expires ? { issuedAt, expiresAt: issuedAt + (body.expires_in as number) * 1000 } : {}),
    };
  }

  private oauth(): OAuthDescriptor {
    if (!this.descriptor.oauth2) throw new Error(`${this.descriptor.id} does not use OAuth`);
    return this.descriptor.oauth2;
  }

  // ---- requests ----

  /**
   * Requests for a stored configuration, paced by the caller's share of the ESP account (a lease),
   * or per process without one; on a 401 with OAuth credentials the tokens are refreshed once
   * (single-flight) and the request retried once.
   */
  private callFor(target: ProcessorTarget, pacing?: AccountPacing): EspCall {
    const account =
      pacing ??
      this.pacers.of({ esp: this.descriptor.id, accountId: target.espAccountId, limits: this.limits() });
    const base = this.baseUrl(target);
    return async (request, { limit, ...options } = {}) => {
      const pacer = {
        run: <T>(fn: () => Promise<T>) => account.run(fn, limit),
        pause: (ms: number) => account.pause(ms),
      };
      const { credentials } = await this.credentials(target);
      try {
        return await this.sendRetryingTransient(credentials, base, request, { ...options, pacer });
      } catch (err) {
        if (
          !(err instanceof InvalidCredentialsError) ||
          credentials.kind !== 'oauth2' ||
          !credentials.refreshToken
        ) {
          throw err;
        }
        const fresh = await this.refresh(target, credentials);
        return this.send(fresh, base, request, { ...options, pacer });
      }
    };
  }

  /** Requests with credentials that are not stored yet (connect flow), unpaced. */
  private callWith(credentials: Credentials, base: string): EspCall {
    return (request, options) => this.send(credentials, base, request, options ?? {});
  }

  /**
   * A 5xx, timeout or reset is retried twice here, quickly (every ESP call espresso makes is
   * idempotent: reads, and writes of the same values); what still fails goes back to the activity's
   * retry policy. 429s are not retried here: the activity retries after the ESP's Retry-After.
   */
  private async sendRetryingTransient<T>(
    credentials: Credentials,
    base: string,
    request: EspRequest,
    options: SendOptions,
  ) {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.send<T>(credentials, base, request, options);
      } catch (err) {
        if (!(err instanceof TransientError) || attempt > QUICK_RETRIES) throw err;
        await new Promise((r) => setTimeout(r, 200 * attempt));
      }
    }
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

  private async updateIsolating(
    call: EspCall,
    target: ProcessorTarget,
    batch: ContactUpdate[],
  ): Promise<ContactResult[]> {
    let results: ContactResult[];
    try {
      results = await shapeChecked(() => this.updateContacts(call, target, batch));
    } catch (err) {
      if (!(err instanceof RequestRejectedError)) throw err;
      if (batch.length === 1)
        return [{ contactId: batch[0]!.contactId, status: 'rejected', reason: err.message }];
      const rows = (err.rows ?? []).filter((i) => Number.isInteger(i) && i >= 0 && i < batch.length);
      if (rows.length > 0) {
        const bad = new Set(rows);
        const rejected = batch
          .filter((_, i) => bad.has(i))
          .map((u): ContactResult => ({ contactId: u.contactId, status: 'rejected', reason: err.message }));
        const rest = batch.filter((_, i) => !bad.has(i));
        return [...rejected, ...(rest.length ? await this.updateIsolating(call, target, rest) : [])];
      }
      const half = Math.ceil(batch.length / 2);
      const [left, right] = await Promise.all([
        this.updateIsolating(call, target, batch.slice(0, half)),
        this.updateIsolating(call, target, batch.slice(half)),
      ]);
      return [...left, ...right];
    }
    const ids = new Set(results.map((r) => r.contactId));
    if (results.length !== batch.length || batch.some((u) => !ids.has(u.contactId))) {
      // Unknown outcome for some rows: rewriting the same values is safe, so retry the batch.
      throw new TransientError(`the ESP returned ${results.length} results for ${batch.length} contacts`);
    }
    return results;
  }
}

/** A dry run's maintenance reached a write (every ESP reads the field with GET, creates it otherwise). */
class WouldWrite extends Error {}

/**
 * An ESP answer of an unexpected shape (a null where an object was documented, a missing list)
 * that an ESP's code did not check becomes a retryable TransientError, never a crash.
 */
async function shapeChecked<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof TypeError) {
      throw new TransientError(`the ESP answered with an unexpected shape (${sanitize(err.message)})`);
    }
    throw err;
  }
}
