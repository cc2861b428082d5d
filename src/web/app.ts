import cookieParser from 'cookie-parser';
import express, { type Express, type NextFunction, type Request, type Response } from 'express';
import { rateLimit } from 'express-rate-limit';
import helmet from 'helmet';
import { collectDefaultMetrics, Counter, Histogram, Registry } from 'prom-client';
import { createLogger } from '../logger';
import { sanitize } from '../processors/errors';
import { adminAuth } from './admin-auth';
import { adminRoutes } from './admin-routes';
import { codecRoutes } from './codec-routes';
import { connectRoutes } from './connect-routes';
import type { WebDeps } from './deps';
import { FailedAuthGuard } from './failed-auth';
import { checkDependencies } from './health';
import { errorPage } from './error-pages';
import { publisherRoutes } from './publisher-routes';
import { Signer } from './security';

function webMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'espresso_web_' });
  return {
    registry,
    requests: new Counter({
      name: 'espresso_web_requests_total',
      help: 'HTTP requests by method, matched route and status',
      labelNames: ['method', 'route', 'status'],
      registers: [registry],
    }),
    duration: new Histogram({
      name: 'espresso_web_request_duration_seconds',
      help: 'HTTP request duration by method and matched route',
      labelNames: ['method', 'route'],
      registers: [registry],
    }),
  };
}

export function createApp(deps: WebDeps): Express {
  const log = deps.log ?? createLogger('web');
  const signer = new Signer(deps.web.sessionSecret);
  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', deps.web.trustProxy ?? false);
  const https = deps.web.publicUrl.startsWith('https://');
  // HSTS and upgrade-insecure-requests only where there is HTTPS to upgrade to.
  app.use(
    helmet({
      strictTransportSecurity: https,
      contentSecurityPolicy: { directives: { upgradeInsecureRequests: https ? [] : null } },
    }),
  );
  // Pages carry CSRF tokens, configurations and runs: no browser or proxy keeps a copy.
  app.use((_req, res, next) => {
    res.setHeader('cache-control', 'no-store');
    next();
  });
  app.use(cookieParser());
  // The codec reads its own JSON bodies, before any form parser could take them.
  const failedAuth = new FailedAuthGuard(deps.web.failedAuth);
  app.use(codecRoutes(deps, failedAuth));
  app.use(express.urlencoded({ extended: false, limit: '20kb', parameterLimit: 20 }));
  const limiter = () =>
    rateLimit({
      windowMs: 60_000,
      limit: deps.web.postsPerMinute ?? 30,
      standardHeaders: 'draft-7',
      legacyHeaders: false,
      // X-Forwarded-For is ignored on purpose unless a proxy is trusted (ESPRESSO_TRUST_PROXY).
      validate: { xForwardedForHeader: false },
      handler: (_req, res) =>
        errorPage(
          res,
          429,
          'Slow down',
          '<h1>Too many attempts</h1><p>Please wait a minute and try again.</p>',
        ),
    });
  // Form posts, and OAuth starts (each sends the browser to the ESP): as many per client each.
  const limiters = { posts: limiter(), starts: limiter() };

  // Liveness: always 200 while the process serves, with each dependency's state for humans and probes.
  app.get('/healthz', async (_req, res) => {
    const dependencies = await checkDependencies(deps);
    const allUp = Object.values(dependencies).every((d) => d.state === 'up');
    res.json({ status: allUp ? 'ok' : 'degraded', dependencies });
  });

  // Readiness: 503 until Temporal and both stores answer, for load balancers and orchestrators.
  app.get('/readyz', async (_req, res) => {
    const dependencies = await checkDependencies(deps);
    const ready = Object.values(dependencies).every((d) => d.state === 'up');
    res.status(ready ? 200 : 503).json({ status: ready ? 'ready' : 'not_ready', dependencies });
  });

  // Prometheus metrics of the web server, behind the admin credentials (Prometheus sends a bearer token).
  const metrics = webMetrics();
  app.use((req, res, next) => {
    const started = performance.now();
    res.on('finish', () => {
      // The matched route pattern, never the raw path: random URLs must not create series.
      const route = routeOf(req) ?? 'unmatched';
      const labels = { method: req.method, route, status: String(res.statusCode) };
      metrics.requests.inc(labels);
      metrics.duration.observe({ method: req.method, route }, (performance.now() - started) / 1000);
    });
    next();
  });
  app.get('/metrics', adminAuth(deps.web.admin, failedAuth), async (_req, res) => {
    res.type(metrics.registry.contentType).send(await metrics.registry.metrics());
  });

  app.use(connectRoutes(deps, signer, limiters, log));
  app.use(adminRoutes(deps, signer, limiters.posts, failedAuth));
  app.use(publisherRoutes(deps, signer, limiters.posts));

  app.use((_req, res) =>
    errorPage(res, 404, 'Not found', '<h1>Page not found</h1><p><a href="/">Start page</a></p>'),
  );
  // Never a stack trace or an internal message on a page.
  app.use((err: unknown, req: Request, res: Response, _next: NextFunction) => {
    const status = (err as { status?: number; type?: string }).status;
    if (status && status >= 400 && status < 500) {
      return errorPage(
        res,
        status,
        'Invalid request',
        '<h1>Invalid request</h1><p>The request could not be read.</p>',
      );
    }
    // The route's pattern, never the path: a publisher link's path holds its secret token.
    const route = routeOf(req) ?? '(no route)';
    log.error({ err: sanitize((err as Error).message ?? String(err)), route }, 'request failed');
    errorPage(
      res,
      500,
      'Something went wrong',
      '<h1>Something went wrong</h1><p>Nothing was changed. Please try again in a moment.</p>',
    );
  });
  return app;
}

/** The pattern of the route that matched (`/publisher/:id/:token`), never the path itself. */
function routeOf(req: Request): string | undefined {
  return req.route?.path ? `${req.baseUrl}${String(req.route.path)}` : undefined;
}
