// Prometheus metrics of the worker: espresso's own (ESP requests, contacts, rate limits) and the
// Temporal SDK's runtime metrics, served together on ESPRESSO_METRICS_PORT at /metrics.
import { createServer, type Server } from 'node:http';
import { Counter, Histogram, Registry } from 'prom-client';

export class EspMetrics {
  readonly registry = new Registry();
  readonly requests = new Counter({
    name: 'espresso_esp_requests_total',
    help: 'ESP API requests by ESP and HTTP status ("network" when no answer came)',
    labelNames: ['esp', 'status'],
    registers: [this.registry],
  });
  readonly duration = new Histogram({
    name: 'espresso_esp_request_duration_seconds',
    help: 'ESP API request duration',
    labelNames: ['esp'],
    buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });
  readonly rateLimited = new Counter({
    name: 'espresso_esp_rate_limited_total',
    help: 'ESP answers 429 (rate limited)',
    labelNames: ['esp'],
    registers: [this.registry],
  });
  readonly rateLimitWait = new Counter({
    name: 'espresso_rate_limit_wait_seconds_total',
    help: 'Time requests waited for client-side pacing (rate and concurrency) before being sent',
    labelNames: ['esp'],
    registers: [this.registry],
  });
  readonly contacts = new Counter({
    name: 'espresso_contacts_total',
    help: 'Contacts written to the ESP, by result (updated, rejected) and rejection kind',
    labelNames: ['esp', 'result', 'kind'],
    registers: [this.registry],
  });
}

/** Serves `/metrics`: espresso's registry, followed by the SDK's exporter output when given. */
export function serveMetrics(
  metrics: EspMetrics,
  host: string,
  port: number,
  sdkMetricsUrl?: string,
): Promise<Server> {
  const server = createServer(async (req, res) => {
    if (req.url !== '/metrics') {
      res.writeHead(404).end('not found: try /metrics\n');
      return;
    }
    let sdk = '';
    if (sdkMetricsUrl) {
      try {
        sdk = await (await fetch(sdkMetricsUrl, { signal: AbortSignal.timeout(2_000) })).text();
      } catch {
        sdk = '# the Temporal SDK metrics exporter did not answer\n';
      }
    }
    res.writeHead(200, { 'content-type': metrics.registry.contentType });
    res.end((await metrics.registry.metrics()) + '\n' + sdk);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve(server));
  });
}
