// Credentials from the secret store, and OAuth tokens kept fresh: refreshed before they expire or
// after a 401, one refresh per grant at a time across every process (refresh-leases.ts), the
// rotated tokens saved before they are used.
import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { CorruptDataError, NotFoundError, type SecretStore } from '../storage';
import { InvalidCredentialsError, TransientError } from './errors';
import type { EspHttp } from './http';
import { leaseMs, RefreshLeases } from './refresh-leases';
import type { Credentials, OAuthDescriptor, ProcessorTarget } from './types';

/** A process that finds another refreshing the grant looks for its saved tokens this often… */
const REFRESH_POLL_MS = 200;
/** …for at least this long, and past the lease's own expiry (when it takes the lease itself). */
const REFRESH_WAIT_MS = 60_000;
/**
 * Rotated tokens whose save fails are saved again after these delays (7.75 s in all), while the
 * refresh still holds its lease: the ESP has already retired the refresh token the store holds.
 */
const SAVE_RETRIES_MS = [250, 500, 1_000, 2_000, 4_000];

export interface OAuthTokensDeps {
  secrets: SecretStore;
  /** One OAuth refresh per grant across processes; without it (tests of processors), per process only. */
  refreshLeases?: RefreshLeases;
  http: EspHttp;
  now: () => number;
  /** The ESP's OAuth app; throws for ESPs that connect with keys only. */
  oauth: () => OAuthDescriptor;
}

/**
 * A process's requests use credentials it read from the secret store this recently, rather than
 * reading them once per ESP request (a Secrets Manager call each, paid for and in the listing's
 * path). Replaced credentials (a reconnect, another process's refresh) are read again at the first
 * 401 (BaseProcessor), and maintenance always reads the store.
 */
export const CREDENTIALS_REUSE_MS = 30_000;
/** Past this many configurations read, the entries older than CREDENTIALS_REUSE_MS are dropped. */
const CACHE_PRUNE_AT = 1_000;

/** One ESP's credentials, per configuration. */
export class OAuthTokens {
  private readonly refreshing = new Map<string, Flight>();
  /** By credentials secret id: what the store held when this process last read or wrote it. */
  private readonly recent = new Map<string, { credentials: Credentials; readAt: number }>();
  /**
   * By credentials secret id: rotated tokens this process could not save yet, and the grant they
   * replace. Until saved they are what this process uses, and it tries to save them at each read.
   */
  private readonly unsaved = new Map<string, { tokens: Credentials; replaces: Credentials }>();

  constructor(private readonly deps: OAuthTokensDeps) {}

  /**
   * The stored credentials (read within CREDENTIALS_REUSE_MS, or read now with `fresh`), refreshed
   * first when an OAuth access token expires within the margin. Refresh is single-flight per
   * configuration and the rotated tokens are saved before use.
   */
  async current(
    target: ProcessorTarget,
    options: { fresh?: boolean; signal?: AbortSignal } = {},
  ): Promise<{ credentials: Credentials; refreshed: boolean }> {
    const kept = options.fresh ? undefined : this.recent.get(target.credentialsSecretId);
    const stored =
      kept && this.deps.now() - kept.readAt < CREDENTIALS_REUSE_MS
        ? kept.credentials
        : await this.loadCredentials(target);
    if (stored.kind !== 'oauth2' || !this.expiring(stored)) return { credentials: stored, refreshed: false };
    return { credentials: await this.refresh(target, stored, options.signal), refreshed: true };
  }

  /**
   * New tokens for `stale` (expiring, or refused with a 401). One refresh per grant at a time:
   * per process through `refreshing`, across processes through a lease in the blob store. A process
   * that finds the lease taken waits for the tokens its holder saves. A caller whose activity is
   * cancelled (`signal`) stops waiting at once; the refresh goes on for the others.
   */
  refresh(target: ProcessorTarget, stale: Credentials, signal?: AbortSignal): Promise<Credentials> {
    const key = target.credentialsSecretId;
    let flight = this.refreshing.get(key);
    if (!flight) {
      const started: Flight = { waiting: 0, refresh: Promise.resolve(stale) };
      started.refresh = this.refreshOnce(target, stale, started).finally(() => this.refreshing.delete(key));
      started.refresh.catch(() => undefined); // its callers may all have left
      this.refreshing.set(key, started);
      flight = started;
    }
    const joined = flight;
    joined.waiting++;
    return leaveOnAbort(joined.refresh, signal, () => joined.waiting--);
  }

  /** The refresh `refresh` shares; it stops waiting for another process once `flight` has no caller. */
  private async refreshOnce(
    target: ProcessorTarget,
    stale: Credentials,
    flight: Flight,
  ): Promise<Credentials> {
    const key = target.credentialsSecretId;
    const leases = this.deps.refreshLeases;
    const holder = RefreshLeases.holder();
    const lease = leaseMs(this.deps.http.timeoutMs);
    const waitUntil = this.deps.now() + Math.max(REFRESH_WAIT_MS, lease + REFRESH_POLL_MS);
    for (;;) {
      // Another process may have refreshed since `stale` was read: use its tokens.
      const latest = await this.loadCredentials(target);
      if (latest.kind !== 'oauth2' || this.renewed(stale, latest)) return latest;
      if (!leases) return await this.refreshGrant(target, latest);
      if (await leases.take(key, holder, lease)) {
        try {
          // The previous holder may have saved new tokens just before giving the lease back.
          const current = await this.loadCredentials(target);
          if (current.kind !== 'oauth2' || this.renewed(stale, current)) return current;
          return await this.refreshGrant(target, current);
        } finally {
          await leases.release(key, holder).catch(() => undefined); // it expires on its own
        }
      }
      if (this.deps.now() > waitUntil) {
        throw new TransientError('another process has been refreshing the OAuth tokens for too long');
      }
      if (flight.waiting === 0) throw new TransientError('no caller waits for this refresh any more');
      await sleep(REFRESH_POLL_MS);
    }
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
        if (grantOf(after) !== grantOf(latest)) return after;
      }
      throw err;
    }
    const merged: Credentials =
      next.kind === 'oauth2' ? { ...next, refreshToken: next.refreshToken ?? latest.refreshToken } : next;
    // The ESP has retired the stored refresh token: the new ones must not be lost to a failed save.
    this.remember(target, merged);
    await this.save(target, merged, latest);
    return merged;
  }

  /**
   * Saves rotated tokens, again after each of `retries` when the store fails. Should every try
   * fail, this process keeps them (`unsaved`), uses them, and tries again at each of its reads.
   */
  private async save(
    target: ProcessorTarget,
    tokens: Credentials,
    replaces: Credentials,
    retries: readonly number[] = SAVE_RETRIES_MS,
  ): Promise<void> {
    const id = target.credentialsSecretId;
    for (const delay of [...retries, undefined]) {
      try {
        await this.deps.secrets.put(id, JSON.stringify(tokens));
        this.unsaved.delete(id);
        return;
      } catch {
        if (delay === undefined) break;
        await sleep(delay);
      }
    }
    this.unsaved.set(id, { tokens, replaces });
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
    return (
      credentials.expiresAt - this.deps.now() < Math.min(this.deps.oauth().refreshMarginMs, lifetime / 2)
    );
  }

  /** What the secret store holds now (and what this process's requests use from now on). */
  async loadCredentials(target: ProcessorTarget): Promise<Credentials> {
    let raw: string;
    try {
      raw = await this.deps.secrets.get(target.credentialsSecretId);
    } catch (err) {
      if (err instanceof NotFoundError) {
        this.recent.delete(target.credentialsSecretId);
        throw new InvalidCredentialsError('no credentials are stored');
      }
      throw err;
    }
    let credentials: Credentials;
    try {
      credentials = JSON.parse(raw) as Credentials;
    } catch {
      // JSON.parse quotes the text it could not read: a secret stored by hand as the bare key.
      throw new CorruptDataError('secret', target.credentialsSecretId, 'the credentials are not JSON');
    }
    const pending = this.unsaved.get(target.credentialsSecretId);
    if (pending) {
      // Rotated tokens this process could not save: still to save while the store holds the grant
      // they replace; dropped once it holds another (a reconnect).
      if (grantOf(credentials) !== grantOf(pending.replaces)) {
        this.unsaved.delete(target.credentialsSecretId);
      } else {
        await this.save(target, pending.tokens, pending.replaces, []); // once a read: reads go on
        credentials = pending.tokens;
      }
    }
    this.remember(target, credentials);
    return credentials;
  }

  private remember(target: ProcessorTarget, credentials: Credentials): void {
    const now = this.deps.now();
    if (this.recent.size >= CACHE_PRUNE_AT) {
      for (const [id, entry] of this.recent) {
        if (now - entry.readAt >= CREDENTIALS_REUSE_MS) this.recent.delete(id);
      }
    }
    this.recent.set(target.credentialsSecretId, { credentials, readAt: now });
  }

  async tokenRequest(form: Record<string, string>): Promise<Credentials> {
    const auth = this.deps.oauth();
    const res = await this.deps.http.send<Record<string, unknown>>(
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
    const issuedAt = this.deps.now();
    // `expires_in: 0` (Mailchimp) means the token does not expire.
    const expires = typeof body.expires_in === 'number' && body.expires_in > 0;
    return {
      kind: 'oauth2',
      accessToken: body.access_token,
      refreshToken: typeof body.refresh_token === 'string' ? body.refresh_token : undefined,
      ...(expires ? { issuedAt, expiresAt: issuedAt + (body.expires_in as number) * 1000 } : {}),
    };
  }
}

/** The ESP's consent URL; with PKCE (S256) when the ESP supports it. */
export function consentUrl(
  auth: OAuthDescriptor,
  redirectUri: string,
  state: string,
  codeVerifier: string,
): { url: string; codeVerifier?: string } {
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

/** A refresh under way in this process, and how many callers wait for it. */
interface Flight {
  refresh: Promise<Credentials>;
  waiting: number;
}

/**
 * `promise`, or the abort's reason as soon as `signal` aborts (then `left` runs; the promise goes
 * on regardless).
 */
function leaveOnAbort<T>(promise: Promise<T>, signal: AbortSignal | undefined, left: () => void): Promise<T> {
  if (!signal) return promise;
  if (signal.aborted) {
    left();
    return Promise.reject(signal.reason as Error);
  }
  return new Promise<T>((resolve, reject) => {
    const leave = () => (left(), reject(signal.reason as Error));
    signal.addEventListener('abort', leave, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', leave));
  });
}

/** The tokens of a grant, to tell one grant from another. */
function grantOf(c: Credentials): string {
  return c.kind === 'oauth2' ? `${c.accessToken} ${c.refreshToken}` : '';
}
