// Thousands of random and malformed requests to every route: never a 5xx, never a crash, nothing
// stored. Deterministic (seeded), so a failure can be replayed.
import { strict as assert } from 'node:assert';
import request from 'supertest';
import { ProcessorRegistry } from '../../src/processors/registry';
import { SandboxProcessor } from '../../src/processors/sandbox';
import { SandboxState } from '../../src/sandbox/state';
import { createApp } from '../../src/web/app';
import { startSandbox } from '../processors/sandbox-harness';
import { temporalEnv } from '../support/temporal';
import { tempStores } from '../support/tmp';
import { webDeps } from '../support/web';

/** mulberry32: a tiny seeded PRNG. */
function prng(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('web: fuzzing every route', function () {
  this.timeout(180_000);

  it('answers 2,000 random and malformed requests without a 5xx or a stored configuration', async () => {
    const sandbox = await startSandbox(SandboxState.demo(5));
    const stores = await tempStores();
    const env = await temporalEnv();
    const processor = new SandboxProcessor(
      { secrets: stores.secrets },
      { url: sandbox.url, rateLimit: { requests: 1000, perMs: 1000 }, concurrency: 4 },
    );
    const app = createApp(
      webDeps(stores, async () => env.connection, {
        processors: new ProcessorRegistry([processor]),
        web: {
          publicUrl: 'http://localhost:3000',
          sessionSecret: 'fuzz-secret-0123456789-0123456789',
          admin: { user: 'ops', password: 'fuzz-password-123' },
          postsPerMinute: 1_000_000,
        },
      }),
    );
    const random = prng(20261128);
    // Lone surrogates cannot be percent-encoded; malformed encodings are sent raw below instead.
    const enc = (v: string) => encodeURIComponent(v.replace(/[\uD800-\uDFFF]/g, '\uFFFD'));
    const header = (v: string) => v.replace(/[^\x20-\x7e]/g, '?');
    const pick = <T>(xs: T[]): T => xs[Math.floor(random() * xs.length)]!;
    const junk = () => {
      const kinds = [
        () => '',
        () => 'x'.repeat(Math.floor(random() * 20_000)),
        () => '<script>alert(1)</script>',
        () => "' OR 1=1 --",
        () => '../../etc/passwd',
        () => '%00%ff%fe',
        () => String.fromCharCode(...Array.from({ length: 40 }, () => Math.floor(random() * 0xffff))),
        () => 'cfg_' + 'a'.repeat(Math.floor(random() * 40)),
        () => JSON.stringify({ a: [1, { b: null }] }),
        () => 'sandbox',
        () => String(Math.floor(random() * 1e9)),
      ];
      return pick(kinds)();
    };
    const paths = [
      '/',
      '/healthz',
      '/auth/sandbox/start',
      '/auth/sandbox/callback',
      '/auth/sandbox/key',
      '/auth/sandbox/list',
      '/auth/unknown/start',
      '/admin',
      '/admin/configurations/cfg_aaaaaaaaaa/run',
      '/admin/configurations/x/disable',
      '/nope',
    ];
    const types = [
      'application/x-www-form-urlencoded',
      'application/json',
      'text/plain',
      'multipart/form-data',
      'application/xml',
    ];
    const statuses = new Map<number, number>();
    for (let i = 0; i < 2_000; i++) {
      const method = pick(['GET', 'POST', 'PUT', 'DELETE', 'PATCH']);
      const query = Array.from(
        { length: Math.floor(random() * 4) },
        () => `${enc(pick(['state', 'code', 'error', 'reauthorize', junk()]))}=${enc(junk())}`,
      ).join('&');
      const rawQuery = pick(['state=%E0%A4%A', 'code=%', 'reauthorize=%ZZ', '%%%=%%%']);
      const path =
        (random() < 0.1 ? `/auth/${enc(junk())}/callback` : pick(paths)) +
        (random() < 0.05 ? `?${rawQuery}` : query ? `?${query}` : '');
      let req = request(app)[method.toLowerCase() as 'get'](path);
      if (random() < 0.5) req = req.set('content-type', pick(types));
      if (random() < 0.3)
        req = req.set('cookie', `espresso_flow=${enc(junk())}; espresso_csrf=${enc(junk())}`);
      if (random() < 0.2)
        req = req.set(
          'authorization',
          pick([
            'Basic ' + Buffer.from(`ops:${junk()}`).toString('base64'),
            header(`Bearer ${junk()}`),
            header(junk()),
          ]),
        );
      if (method !== 'GET' && random() < 0.8) {
        const body =
          random() < 0.5
            ? `_csrf=${enc(junk())}&apiKey=${enc(junk())}&nonce=${enc(junk())}&listId=${enc(junk())}`
            : junk();
        req = req.send(body);
      }
      const res = await req;
      statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
      assert.ok(
        res.status < 500 || res.status === 502 || res.status === 503,
        `${method} ${path.slice(0, 120)} answered ${res.status}: ${res.text.slice(0, 200)}`,
      );
      assert.doesNotMatch(res.text, /at [\w.<>]+ \(.*\.js:\d+/, 'a stack trace on a page');
    }
    assert.deepEqual(await stores.configurations.list(), []);
    await sandbox.stop();
    console.log(`      statuses: ${JSON.stringify(Object.fromEntries(statuses))}`);
  });
});
