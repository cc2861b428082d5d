// Signed OAuth states, CSRF tokens and the browser-binding cookie. Stateless HMACs: any web server
// instance behind a load balancer can check them; single use is enforced by the pending store.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Request, Response } from 'express';

export const FLOW_COOKIE = 'espresso_flow';
export const CSRF_COOKIE = 'espresso_csrf';
export const STATE_TTL_MS = 10 * 60_000;

export class Signer {
  constructor(private readonly secret: string) {}

  sign(purpose: string, value: string): string {
    return createHmac('sha256', this.secret).update(`${purpose}\n${value}`).digest('base64url');
  }

  verify(purpose: string, value: string, signature: string): boolean {
    const expected = Buffer.from(this.sign(purpose, value));
    const given = Buffer.from(signature);
    return expected.length === given.length && timingSafeEqual(expected, given);
  }

  /**
   * An OAuth `state`: nonce, ESP, expiry and the configuration a re-authorization is for, signed
   * together with the browser's flow cookie. Nothing is stored when a flow starts: the state and
   * the cookie carry the flow to its callback.
   */
  state(
    nonce: string,
    esp: string,
    binding: string,
    options: { reauthorizeId?: string; now?: number } = {},
  ): string {
    const payload = `${nonce}.${esp}.${(options.now ?? Date.now()) + STATE_TTL_MS}.${options.reauthorizeId ?? ''}`;
    return `${payload}.${this.sign('state', `${payload}.${binding}`)}`;
  }

  /** The nonce (and re-authorized configuration) of a valid state, or why it is not valid. */
  checkState(
    state: string,
    esp: string,
    binding: string | undefined,
    now = Date.now(),
  ): { nonce: string; reauthorizeId?: string } | { problem: string } {
    const parts = state.split('.');
    if (parts.length !== 5) return { problem: 'malformed' };
    const [nonce, stateEsp, expires, reauthorizeId, signature] = parts as [
      string,
      string,
      string,
      string,
      string,
    ];
    if (
      !binding ||
      !this.verify('state', `${nonce}.${stateEsp}.${expires}.${reauthorizeId}.${binding}`, signature)
    ) {
      return { problem: 'signature' };
    }
    if (stateEsp !== esp) return { problem: 'esp' };
    if (Number(expires) < now) return { problem: 'expired' };
    return reauthorizeId ? { nonce, reauthorizeId } : { nonce };
  }

  /**
   * The PKCE code verifier of a flow, derived from its nonce: secret (it needs the session
   * secret), 43 characters as RFC 7636 asks, and never stored anywhere.
   */
  codeVerifier(nonce: string): string {
    return this.sign('pkce', nonce);
  }
}

/**
 * Cookies this server issued carry its signature (`<random>.<hmac>`): a value a client made up, or
 * planted in another browser, is never taken. Over HTTPS the names carry the `__Host-` prefix, so
 * no subdomain can set them either.
 */
const cookieName = (name: string, secure: boolean) => (secure ? `__Host-${name}` : name);

function issuedCookie(req: Request, signer: Signer, name: string, secure: boolean): string | undefined {
  const value: unknown = req.cookies?.[cookieName(name, secure)];
  if (typeof value !== 'string') return undefined;
  const parts = /^([A-Za-z0-9_-]{32})\.([A-Za-z0-9_-]{43})$/.exec(value);
  return parts && signer.verify(`cookie ${name}`, parts[1]!, parts[2]!) ? value : undefined;
}

function issueCookie(signer: Signer, name: string): string {
  const random = randomBytes(24).toString('base64url');
  return `${random}.${signer.sign(`cookie ${name}`, random)}`;
}

/** The value that ties a flow to this browser, when the browser holds one this server issued. */
export function flowCookie(req: Request, signer: Signer, secure: boolean): string | undefined {
  return issuedCookie(req, signer, FLOW_COOKIE, secure);
}

/** The value that ties a flow to this browser; set on the first page of the flow. */
export function flowBinding(req: Request, res: Response, signer: Signer, secure: boolean): string {
  const existing = flowCookie(req, signer, secure);
  if (existing) return existing;
  const value = issueCookie(signer, FLOW_COOKIE);
  // Lax: the cookie must come back on the ESP's top-level redirect to our callback.
  res.cookie(cookieName(FLOW_COOKIE, secure), value, {
    httpOnly: true,
    sameSite: 'lax',
    secure,
    path: '/',
    maxAge: STATE_TTL_MS * 6,
  });
  return value;
}

/** A CSRF token for forms: HMAC of a per-browser cookie this server issued (double submit, signed). */
export function csrfToken(req: Request, res: Response, signer: Signer, secure: boolean): string {
  let cookie = issuedCookie(req, signer, CSRF_COOKIE, secure);
  if (!cookie) {
    cookie = issueCookie(signer, CSRF_COOKIE);
    res.cookie(cookieName(CSRF_COOKIE, secure), cookie, {
      httpOnly: true,
      sameSite: 'strict',
      secure,
      path: '/',
    });
    req.cookies = { ...req.cookies, [cookieName(CSRF_COOKIE, secure)]: cookie };
  }
  return signer.sign('csrf', cookie);
}

export function csrfValid(req: Request, signer: Signer, secure: boolean): boolean {
  const cookie = issuedCookie(req, signer, CSRF_COOKIE, secure);
  const token = (req.body as Record<string, unknown> | undefined)?._csrf;
  return cookie !== undefined && typeof token === 'string' && signer.verify('csrf', cookie, token);
}

export function newNonce(): string {
  return randomBytes(16).toString('base64url');
}
