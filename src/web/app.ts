import type { Connection } from '@temporalio/client';
import express, { type Express } from 'express';
import type { Stores } from '../storage';
import { checkDependencies } from './health';

export interface WebDeps {
  stores: Stores;
  /** Lazily connected Temporal client connection (the web server starts even while Temporal is down). */
  temporal: () => Promise<Connection>;
}

export function createApp(deps: WebDeps): Express {
  const app = express();
  app.disable('x-powered-by');

  // Liveness: always 200 while the process serves, with each dependency's state for humans and probes.
  app.get('/healthz', async (_req, res) => {
    const dependencies = await checkDependencies(deps);
    const allUp = Object.values(dependencies).every((d) => d.state === 'up');
    res.json({ status: allUp ? 'ok' : 'degraded', dependencies });
  });

  app.get('/', (_req, res) => {
    res.type('html').send('<!doctype html><title>espresso</title><h1>espresso</h1><p>Running.</p>');
  });

  return app;
}
