// The Sandbox ESP's HTTP server: what a demanding ESP looks like (OAuth with rotating refresh tokens,
// API keys, cursor pages, batches with per-row errors, 429s with Retry-After past an account's
// limits, shared or its listing's and writing's own; page and batch sizes and limits per account,
// named profiles imitating real ESPs), plus an admin API under /_sandbox for seeding, limits, faults
// and inspection. See docs/sandbox.md. One Express router each: the ESP API (api-routes.ts), OAuth
// (oauth-routes.ts), admin (admin-routes.ts) and inspection (inspection-routes.ts); the API's
// limits and faults are in api-guard.ts.
import { createServer, type Server } from 'node:http';
import express, { type NextFunction, type Request, type Response } from 'express';
import { adminRoutes, requireAdminToken } from './admin-routes';
import { apiRoutes } from './api-routes';
import { HttpError, respondError } from './http';
import { inspectionRoutes } from './inspection-routes';
import { oauthRoutes } from './oauth-routes';
import type { SandboxState } from './state';
import type { SandboxStats } from './stats';

export type { SandboxStats } from './stats';

export interface SandboxServerOptions {
  /** Bearer token every /_sandbox request must carry. */
  adminToken: string;
}

const notFound = (req: Request, res: Response) =>
  respondError(
    res,
    new HttpError(
      404,
      'not_found',
      `no route ${req.method} ${new URL(req.originalUrl, 'http://sandbox').pathname}`,
    ),
  );

export function createSandboxServer(
  state: SandboxState,
  options: SandboxServerOptions,
): Server & { stats: Map<string, SandboxStats> } {
  if (!options.adminToken) throw new Error('the Sandbox admin API needs a token');
  const stats = new Map<string, SandboxStats>();
  const app = express();
  app.disable('x-powered-by');
  // Paths match exactly, as a real ESP's: no other case, no trailing slash.
  app.set('case sensitive routing', true);
  app.set('strict routing', true);
  // Routed by the path as a URL parser reads it (dot segments resolved).
  app.use((req, _res, next) => {
    const url = new URL(req.url, 'http://sandbox');
    req.url = `${url.pathname}${url.search}`;
    next();
  });
  app.use('/_sandbox', requireAdminToken(options.adminToken));
  // Only the methods a route names: no HEAD answered by a GET route, no automatic OPTIONS.
  app.use((req: Request, res: Response, next: NextFunction) =>
    req.method === 'HEAD' || req.method === 'OPTIONS' ? notFound(req, res) : next(),
  );
  app.use(oauthRoutes(state));
  app.use(apiRoutes(state, stats));
  app.use('/_sandbox', adminRoutes(state, stats), inspectionRoutes(state, stats));
  app.use(notFound);
  // What Express itself refuses (a path parameter that does not decode) is unexpected here too.
  app.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => respondError(res, err));
  return Object.assign(createServer(app), { stats });
}
