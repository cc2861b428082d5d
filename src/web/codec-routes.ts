// The codec server (Temporal's remote codec protocol): the Temporal Web UI and `temporal ...
// --codec-endpoint` POST encrypted payloads to <endpoint>/decode and get them back readable.
// Authenticated (admin credentials, or the capability path `npm start` hands the dev UI) and
// CORS-limited to the Web UI's origin.
import type { Payload } from '@temporalio/common';
import express, { Router, type NextFunction, type Request, type Response } from 'express';
import { z } from 'zod';
import { codecPathToken, EncryptionCodec } from '../codec';
import { constantTimeEqual } from '../lib/constant-time-equal';
import { isAdmin } from './admin-auth';
import type { WebDeps } from './deps';
import type { FailedAuthGuard } from './failed-auth';

const base64 = z
  .string()
  .max(8_000_000)
  .regex(/^[A-Za-z0-9+/]*={0,2}$/, 'must be base64');
const body = z.object({
  payloads: z
    .array(z.object({ metadata: z.record(z.string(), base64).optional(), data: base64.optional() }))
    .max(10_000)
    // proto3 JSON leaves out empty lists: `{}` is zero payloads (the Temporal CLI sends it).
    .default([]),
});

export function codecRoutes(deps: WebDeps, failedAuth: FailedAuthGuard): Router {
  const router = Router();
  const codec = new EncryptionCodec(deps.payloadKeys);
  const origins = uiOrigins(deps.temporalUiUrl);
  const token = codecPathToken(deps.web.sessionSecret);
  const { admin } = deps.web;

  const cors = (req: Request, res: Response, next: NextFunction) => {
    const origin = req.headers.origin;
    res.setHeader('vary', 'Origin');
    res.setHeader('cross-origin-resource-policy', 'cross-origin');
    if (origin !== undefined) {
      if (!origins.includes(origin)) return void res.status(403).json({ error: 'origin not allowed' });
      res.setHeader('access-control-allow-origin', origin);
      res.setHeader('access-control-allow-credentials', 'true');
    }
    if (req.method === 'OPTIONS') {
      res.setHeader('access-control-allow-methods', 'POST');
      res.setHeader('access-control-allow-headers', 'Content-Type, X-Namespace, Authorization');
      res.setHeader('access-control-max-age', '600');
      return void res.status(204).end();
    }
    next();
  };

  const authorized = (req: Request): boolean => {
    const pathToken = req.params.token;
    if (typeof pathToken === 'string') return constantTimeEqual(pathToken, token);
    return isAdmin(admin, req.headers.authorization);
  };

  // Before the body is read: unauthenticated callers cost nothing. Wrong tokens or credentials
  // count against the client like the admin page's (one guard for both).
  const auth = (req: Request, res: Response, next: NextFunction) => {
    const client = req.ip ?? '';
    const waitMs = failedAuth.waitMs(client);
    if (waitMs > 0) {
      const seconds = Math.ceil(waitMs / 1000);
      res.setHeader('retry-after', String(seconds));
      return void res.status(429).json({ error: `too many failed attempts: try again in ${seconds} s` });
    }
    if (authorized(req)) {
      failedAuth.succeeded(client);
      return next();
    }
    if (typeof req.params.token === 'string' || req.headers.authorization) failedAuth.failed(client);
    res.status(401).json({ error: 'not authorized' });
  };

  const handle = (direction: 'encode' | 'decode') => async (req: Request, res: Response) => {
    const namespace = req.headers['x-namespace'];
    if (namespace !== undefined && namespace !== deps.temporalNamespace) {
      return void res.status(400).json({ error: `this codec serves namespace ${deps.temporalNamespace}` });
    }
    const parsed = body.safeParse(req.body);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      return void res.status(400).json({ error: `${issue.path.join('.') || 'body'}: ${issue.message}` });
    }
    const payloads: Payload[] = parsed.data.payloads.map((p) => ({
      metadata: Object.fromEntries(Object.entries(p.metadata ?? {}).map(([k, v]) => [k, fromBase64(v)])),
      data: fromBase64(p.data ?? ''),
    }));
    let out: Payload[];
    try {
      out = direction === 'decode' ? await codec.decode(payloads) : await codec.encode(payloads);
    } catch (err) {
      return void res.status(400).json({ error: (err as Error).message });
    }
    res.json({
      payloads: out.map((p) => ({
        metadata: Object.fromEntries(Object.entries(p.metadata ?? {}).map(([k, v]) => [k, toBase64(v)])),
        data: toBase64(p.data ?? new Uint8Array()),
      })),
    });
  };

  const json = express.json({ limit: '16mb', type: () => true });
  // The capability path (the dev Web UI, `codec-endpoint` for the CLI) or the admin credentials.
  // Encoding is needed too: the Temporal CLI encodes query arguments through the same endpoint.
  for (const path of ['/codec/:token', '/codec']) {
    router.options([`${path}/decode`, `${path}/encode`], cors);
    router.post(`${path}/decode`, cors, auth, json, handle('decode'));
    router.post(`${path}/encode`, cors, auth, json, handle('encode'));
  }
  // Bodies that are not JSON (a form, a truncated upload) get a JSON answer naming the problem.
  router.use('/codec', (err: unknown, _req: Request, res: Response, next: NextFunction) => {
    const status = (err as { status?: number }).status;
    if (!status || status >= 500) return next(err);
    res
      .status(status)
      .json({ error: status === 413 ? 'body: too large' : 'body: must be JSON ({"payloads": [...]})' });
  });
  return router;
}

/** The UI's origin, and its localhost / 127.0.0.1 twin (browsers send whichever was typed). */
function uiOrigins(uiUrl: string): string[] {
  const url = new URL(uiUrl);
  const origins = [url.origin];
  for (const [a, b] of [
    ['localhost', '127.0.0.1'],
    ['127.0.0.1', 'localhost'],
  ] as const) {
    if (url.hostname === a) origins.push(`${url.protocol}//${b}${url.port ? `:${url.port}` : ''}`);
  }
  return origins;
}

const fromBase64 = (s: string) => new Uint8Array(Buffer.from(s, 'base64'));
const toBase64 = (b: Uint8Array) => Buffer.from(b).toString('base64');
