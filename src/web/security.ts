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

  /** An OAuth `state`: nonce, ESP and expiry, signed together with the browser's flow cookie. */
  state(nonce: string, esp: string, binding: string, now = Date.now()): string {
    const payload = `${nonce}.${esp}.${now + STATE_TTL_MS}`;
    return `${payload}.${this.sign('state', `${payload}.${binding}`)}`;
  }

  /** The nonce of a valid state, or why it is not valid. */
  checkState(
    state: string,
    esp: string,
    binding: string | undefined,
    now = Date.now(),
  ): { nonce: string } | { problem: string } {
    const parts = state.split('.');
    if (parts.length !== 4) return { problem: 'malformed' };
    const [nonce, stateEsp, expires, signature] = parts as [string, string, string, string];
    if (!binding || !this.verify('state', `${nonce}.${stateEsp}.${expires}.${binding}`, signature)) {
      return { problem: 'signature' };
    }
    if (stateEsp !== esp) return { problem: 'esp' };
    if (Number(expires) < now) return { problem: 'expired' };
    return { nonce };
  }
}

/** The random value that ties a flow to this browser; set on the first page of the flow. */
export function flowBinding(req: Request, res: Response, secure: boolean): string {
  const existing = req.cookies?.[FLOW_COOKIE];
  if (typeof existing === 'string' && /^[A-Za-z0-9_-]{20,64}$/.test(existing)) return existing;
  const value = randomBytes(24).toString('base64url');
  // Lax: the cookie must come back on the ESP's top-level redirect to our callback.
  res.cookie(FLOW_COOKIE, value, {
    httpOnly: true,
    sameSite: 'lax',
    secure,
    path: '/',
    maxAge: STATE_TTL_MS * 6,
  });
  return value;
}

/** A CSRF token for forms: HMAC of a per-browser cookie (double submit, signed). */
export function csrfToken(req: Request, res: Response, signer: Signer, secure: boolean): string {
  let cookie = req.cookies?.[CSRF_COOKIE];
  if (typeof cookie !== 'string' || !/^[A-Za-z0-9_-]{20,64}$/.test(cookie)) {
    cookie = randomBytes(24).toString('base64url');
    res.cookie(CSRF_COOKIE, cookie, { httpOnly: true, sameSite: 'strict', secure, path: '/' });
    req.cookies = { ...req.cookies, [CSRF_COOKIE]: cookie };
  }
  return signer.sign('csrf', cookie);
}

export function csrfValid(req: Request, signer: Signer): boolean {
  const cookie = req.cookies?.[CSRF_COOKIE];
  const token = (req.body as Record<string, unknown> | undefined)?._csrf;
  return typeof cookie === 'string' && typeof token === 'string' && signer.verify('csrf', cookie, token);
}

export function newNonce(): string {
  return randomBytes(16).toString('base64url');
}
