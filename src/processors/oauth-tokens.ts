// Credentials from the secret store, and OAuth tokens kept fresh: refreshed before they expire or
// after a 401, one refresh per grant at a time across every process (refresh-leases.ts), the
// rotated tokens saved before they are used.
import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { CorruptDataError, NotFoundError, type SecretStore } from '../storage';
import { InvalidCredentialsError, TransientError } from './errors';
import type { EspHttp } from './http';
import { RefreshLeases } from './refresh-leases';
import type { Credentials, OAuthDescriptor, ProcessorTarget } from './types';

/** A process that finds another refreshing the grant looks for its saved tokens this often… */
const REFRESH_POLL_MS = 200;
/** …for at most this long (past the lease's own expiry, when it takes the lease itself). */
const REFRESH_WAIT_MS = 60_000;

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
  private readonly refreshing = new Map<string, Promise<Credentials>>();
  /** By credentials secret id: what the store held when this process last read or wrote it. */
  private readonly recent = new Map<string, { credentials: Credentials; readAt: number }>();

  constructor(private readonly deps: OAuthTokensDeps) {}

  /**
   * The stored credentials (read within CREDENTIALS_REUSE_MS, or read now with `fresh`), refreshed
   * first when an OAuth access token expires within the margin. Refresh is single-flight per
   * configuration and the rotated tokens are saved before use.
   */
  async current(
    target: ProcessorTarget,
    options: { fresh?: boolean } = {},
  ): Promise<{ credentials: Credentials; refreshed: boolean }> {
    const kept = options.fresh ? undefined : this.recent.get(target.credentialsSecretId);
    const stored =
      kept && this.deps.now() - kept.readAt < CREDENTIALS_REUSE_MS
        ? kept.credentials
        : await this.loadCredentials(target);
    if (stored.kind !== 'oauth2' || !this.expiring(stored)) return { credentials: stored, refreshed: false };
    return { credentials: await this.refresh(target, stored), refreshed: true };
  }

  /**
   * New tokens for `stale` (expiring, or refused with a 401). One refresh per grant at a time:
   * per process through `refreshing`, across processes through a lease in the blob store. A process
   * that finds the lease taken waits for the tokens its holder saves.
   */
  refresh(target: ProcessorTarget, stale: Credentials): Promise<Credentials> {
    const key = target.credentialsSecretId;
    const inFlight = this.refreshing.get(key);
    if (inFlight) return inFlight;
    const refresh = (async () => {
      const leases = this.deps.refreshLeases;
      const holder = RefreshLeases.holder();
      const waitUntil = this.deps.now() + REFRESH_WAIT_MS;
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
        if (this.deps.now() > waitUntil) {
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
    this.remember(target, merged);
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
