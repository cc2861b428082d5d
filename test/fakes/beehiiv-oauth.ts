// beehiiv's OAuth2 authorization server, as its OAuth2 guide describes it (served by the fake under
// /oauth on its own host): the authorization code flow with PKCE (S256 or plain), a form-encoded
// token endpoint for the client (id and secret in the body), access tokens of two hours, refresh
// tokens that rotate (a refresh token works once), scopes per resource (`<resource>:read` for
// GET, `<resource>:write` for the rest), and OAuth error bodies ({error, error_description}).
import { createHash, randomBytes } from 'node:crypto';
import type { FakeOrganization } from './beehiiv-server';

export const SCOPES = new Set(
  ['identify', 'automations', 'custom_fields', 'subscriptions', 'polls', 'posts', 'publications']
    .concat(['referral_program', 'segments', 'tiers', 'webhooks'])
    .flatMap((r) => [`${r}:read`, `${r}:write`]),
);
const ACCESS_TOKEN_SECONDS = 7200;

export class OAuthFail extends Error {
  constructor(
    readonly status: number,
    readonly error: string,
    description: string,
  ) {
    super(description);
  }
}

interface Grant {
  organization: FakeOrganization;
  scopes: string[];
  revoked: boolean;
}

export class BeehiivOAuth {
  readonly client = { id: randomBytes(16).toString('base64url'), secret: randomBytes(24).toString('hex') };
  /** Token answers given (authorization codes and refreshes). */
  grants = 0;
  private readonly codes = new Map<
    string,
    { grant: Grant; redirectUri: string; challenge?: string; method?: string }
  >();
  private readonly access = new Map<string, { grant: Grant; expiresAt: number }>();
  private readonly refresh = new Map<string, Grant>();

  /** GET /oauth/authorize, consented at once for `organization`: where the browser goes next. */
  authorize(query: URLSearchParams, organization: FakeOrganization): string {
    if (query.get('client_id') !== this.client.id)
      throw new OAuthFail(401, 'invalid_client', 'Unknown client');
    if (query.get('response_type') !== 'code') {
      throw new OAuthFail(400, 'unsupported_response_type', 'response_type must be code');
    }
    const redirectUri = query.get('redirect_uri');
    if (!redirectUri || !/^https?:\/\//.test(redirectUri)) {
      throw new OAuthFail(400, 'invalid_request', 'redirect_uri is required');
    }
    const scopes = (query.get('scope') ?? 'identify:read').split(' ');
    if (scopes.some((s) => !SCOPES.has(s))) throw new OAuthFail(400, 'invalid_scope', 'Unknown scope');
    const challenge = query.get('code_challenge') ?? undefined;
    const method = query.get('code_challenge_method') ?? (challenge ? 'plain' : undefined);
    if (method && method !== 'S256' && method !== 'plain') {
      throw new OAuthFail(400, 'invalid_request', 'code_challenge_method must be plain or S256');
    }
    const code = randomBytes(16).toString('base64url');
    this.codes.set(code, { grant: { organization, scopes, revoked: false }, redirectUri, challenge, method });
    const back = new URL(redirectUri);
    back.searchParams.set('code', code);
    const state = query.get('state');
    if (state !== null) back.searchParams.set('state', state);
    return back.toString();
  }

  /** POST /oauth/token (form-encoded). */
  token(form: URLSearchParams): Record<string, unknown> {
    if (form.get('client_id') !== this.client.id || form.get('client_secret') !== this.client.secret) {
      throw new OAuthFail(401, 'invalid_client', 'Client authentication failed');
    }
    const type = form.get('grant_type');
    let grant: Grant | undefined;
    if (type === 'authorization_code') {
      const code = this.codes.get(form.get('code') ?? '');
      this.codes.delete(form.get('code') ?? '');
      if (!code || code.redirectUri !== form.get('redirect_uri')) {
        throw new OAuthFail(400, 'invalid_grant', 'The authorization code is invalid');
      }
      const verifier = form.get('code_verifier') ?? '';
      const expected =
        code.method === 'S256' ? createHash('sha256').update(verifier).digest('base64url') : verifier;
      if (code.challenge !== undefined && code.challenge !== expected) {
        throw new OAuthFail(400, 'invalid_grant', 'The code verifier does not match');
      }
      grant = code.grant;
    } else if (type === 'refresh_token') {
      const presented = form.get('refresh_token') ?? '';
      grant = this.refresh.get(presented);
      // Rotation: a refresh token works once.
      this.refresh.delete(presented);
      if (!grant || grant.revoked) throw new OAuthFail(400, 'invalid_grant', 'The refresh token is invalid');
    } else {
      throw new OAuthFail(400, 'unsupported_grant_type', 'grant_type is not supported');
    }
    const accessToken = randomBytes(24).toString('base64url');
    const refreshToken = randomBytes(24).toString('base64url');
    this.access.set(accessToken, { grant, expiresAt: Date.now() + ACCESS_TOKEN_SECONDS * 1000 });
    this.refresh.set(refreshToken, grant);
    this.grants++;
    return {
      access_token: accessToken,
      token_type: 'Bearer',
      expires_in: ACCESS_TOKEN_SECONDS,
      created_at: Math.floor(Date.now() / 1000),
      refresh_token: refreshToken,
      scope: grant.scopes.join(' '),
    };
  }

  /** The organization and scopes of a live access token. */
  bearer(token: string): { organization: FakeOrganization; scopes: string[] } | undefined {
    const access = this.access.get(token);
    if (!access || access.grant.revoked || access.expiresAt <= Date.now()) return undefined;
    return access.grant;
  }

  expireAccessTokens(organization: FakeOrganization): void {
    for (const a of this.access.values()) if (a.grant.organization === organization) a.expiresAt = 0;
  }

  revokeGrants(organization: FakeOrganization): void {
    for (const g of this.refresh.values()) if (g.organization === organization) g.revoked = true;
    for (const a of this.access.values()) if (a.grant.organization === organization) a.grant.revoked = true;
  }
}
