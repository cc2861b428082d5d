// Who is the admin: HTTP Basic (user + password) or a bearer token, for the admin pages, metrics
// and the codec route.
import type { NextFunction, Request, Response } from 'express';
import { constantTimeEqual } from '../lib/constant-time-equal';
import type { WebDeps } from './deps';
import { errorPage } from './error-pages';
import type { FailedAuthGuard } from './failed-auth';

/** True when the Authorization header carries the admin token or user + password. */
export function isAdmin(admin: WebDeps['web']['admin'], header = ''): boolean {
  if (admin.token && header.startsWith('Bearer ') && constantTimeEqual(header.slice(7), admin.token))
    return true;
  if (admin.user && admin.password && header.startsWith('Basic ')) {
    const decoded = Buffer.from(header.slice(6), 'base64').toString('utf8');
    const i = Math.max(0, decoded.indexOf(':'));
    // Both parts are always compared: the time says neither which was wrong nor how long either is.
    const user = constantTimeEqual(decoded.slice(0, i), admin.user);
    const password = constantTimeEqual(decoded.slice(i + 1), admin.password);
    return user && password;
  }
  return false;
}

/**
 * HTTP Basic (user + password) or a bearer token, from the environment. None set: admin is off.
 * Wrong credentials count against the client (`failedAuth`): after 10, it waits longer each time.
 */
export function adminAuth(admin: WebDeps['web']['admin'], failedAuth: FailedAuthGuard) {
  return (req: Request, res: Response, next: NextFunction) => {
    if (!admin.token && !(admin.user && admin.password)) {
      return errorPage(
        res,
        503,
        'Admin is off',
        '<h1>Admin is off</h1><p>Set <code>ESPRESSO_ADMIN_USER</code> and <code>ESPRESSO_ADMIN_PASSWORD</code>, or <code>ESPRESSO_ADMIN_TOKEN</code>, and restart.</p>',
      );
    }
    const client = req.ip ?? '';
    const waitMs = failedAuth.waitMs(client);
    if (waitMs > 0) {
      const seconds = Math.ceil(waitMs / 1000);
      res.setHeader('retry-after', String(seconds));
      return errorPage(
        res,
        429,
        'Too many failed sign-ins',
        `<h1>Too many failed sign-ins</h1><p>Try again in ${seconds} seconds.</p>`,
      );
    }
    const header = req.headers.authorization;
    if (isAdmin(admin, header)) {
      failedAuth.succeeded(client);
      return next();
    }
    // A browser's first request carries no credentials: only a wrong answer counts.
    if (header) failedAuth.failed(client);
    res.setHeader('www-authenticate', 'Basic realm="espresso admin", charset="UTF-8"');
    errorPage(res, 401, 'Sign in', '<h1>Sign in to the admin page</h1>');
  };
}
