// The Sandbox's OAuth 2.0 server: the consent page and its decision (authorization codes, S256 PKCE
// required, registered redirect URIs only) and the token endpoint (codes and rotating refresh tokens).
import { Router } from 'express';
import { z } from 'zod';
import { constantTimeEqual } from '../lib/constant-time-equal';
import { consentPage, type ConsentRequest } from './consent-page';
import { AuthorizeError, HttpError, OAuthError, parse, route, STREAMED, type RouteContext } from './http';
import type { SandboxState } from './state';

/** An S256 code challenge: the base64url SHA-256 of the verifier (RFC 7636 4.2). */
const CODE_CHALLENGE = /^[A-Za-z0-9_-]{43}$/;

export function oauthRoutes(state: SandboxState): Router {
  const router = Router({ caseSensitive: true, strict: true });
  router.get('/oauth/authorize', route(authorizePage));
  router.post('/oauth/authorize', route(authorizeDecision));
  router.post('/oauth/token', route(token));
  return router;

  function authorizePage(ctx: RouteContext) {
    const q = ctx.query;
    const request: ConsentRequest = {
      clientId: q.get('client_id') ?? '',
      redirectUri: q.get('redirect_uri') ?? '',
      state: q.get('state') ?? '',
      scope: q.get('scope') ?? '',
      codeChallenge: q.get('code_challenge') ?? '',
      codeChallengeMethod: q.get('code_challenge_method') ?? '',
    };
    checkAuthorization(request, q.get('response_type'));
    const accounts = [...state.accounts.values()].map((a) => ({ id: a.id, name: a.name }));
    ctx.res.setHeader('content-type', 'text/html; charset=utf-8');
    return consentPage(request, accounts);
  }

  function authorizeDecision(ctx: RouteContext) {
    const form = parse(
      z.object({
        decision: z.enum(['approve', 'deny']),
        account: z.string().optional(),
        clientId: z.string(),
        redirectUri: z.string(),
        state: z.string().default(''),
        codeChallenge: z.string().default(''),
        codeChallengeMethod: z.string().default(''),
      }),
      ctx.body,
    );
    // The form comes back from the browser: checked again, as anyone can post it. Its page was
    // shown for response_type=code only.
    checkAuthorization(form, 'code');
    const target = new URL(form.redirectUri);
    if (form.decision === 'deny') {
      target.searchParams.set('error', 'access_denied');
      target.searchParams.set('error_description', 'The user denied access');
    } else {
      const account = state.accounts.get(form.account ?? '');
      if (!account) throw new HttpError(400, 'invalid_request', 'unknown account');
      target.searchParams.set(
        'code',
        state.issueCode({
          accountId: account.id,
          clientId: form.clientId,
          redirectUri: form.redirectUri,
          codeChallenge: form.codeChallenge,
        }),
      );
    }
    if (form.state) target.searchParams.set('state', form.state);
    ctx.res.writeHead(302, { location: target.toString() });
    ctx.res.end();
    return STREAMED;
  }

  /**
   * An authorization request as a real OAuth server checks it (RFC 6749 4.1.2.1): an unknown client
   * or a redirect URI not registered for it gets an error page and is never redirected to; other
   * problems are sent back to the (registered) redirect URI. PKCE with S256 is required.
   */
  function checkAuthorization(request: Omit<ConsentRequest, 'scope'>, responseType: string | null): void {
    const client = state.clients.get(request.clientId);
    if (!client) throw new AuthorizeError('invalid_client', 'unknown client_id');
    if (!client.redirectUris.includes(request.redirectUri)) {
      throw new AuthorizeError('invalid_request', 'redirect_uri is not registered for this client');
    }
    const back = { redirectUri: request.redirectUri, state: request.state };
    if (responseType !== 'code') {
      throw new AuthorizeError('unsupported_response_type', 'response_type must be code', back);
    }
    if (!CODE_CHALLENGE.test(request.codeChallenge)) {
      throw new AuthorizeError('invalid_request', 'PKCE is required: an S256 code_challenge', back);
    }
    if (request.codeChallengeMethod !== 'S256') {
      throw new AuthorizeError('invalid_request', 'code_challenge_method must be S256', back);
    }
  }

  function token(ctx: RouteContext) {
    const form = (ctx.body ?? {}) as Record<string, string | undefined>;
    const client = state.clients.get(form.client_id ?? '');
    if (!client || !constantTimeEqual(form.client_secret ?? '', client.secret)) {
      throw new OAuthError(401, 'invalid_client');
    }
    const issued =
      form.grant_type === 'authorization_code'
        ? state.exchangeCode(form.code ?? '', client.id, form.redirect_uri ?? '', form.code_verifier)
        : form.grant_type === 'refresh_token'
          ? state.refresh(form.refresh_token ?? '')
          : 'unsupported';
    if (issued === 'unsupported') throw new OAuthError(400, 'unsupported_grant_type');
    if (!issued) throw new OAuthError(400, 'invalid_grant');
    ctx.res.setHeader('cache-control', 'no-store');
    return issued;
  }
}
