import { strict as assert } from 'node:assert';
import { setMaxListeners } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  errorFromResponse,
  InvalidCredentialsError,
  RateLimitedError,
  RequestRejectedError,
  retryAfterMs,
  sanitize,
  TransientError,
} from '../../src/processors/errors';
import { EspHttp } from '../../src/processors/http';

const outcome = (status: number, headers: Record<string, string> = {}, body?: unknown) => ({
  status,
  headers,
  body,
  text: body === undefined ? '' : JSON.stringify(body),
});

describe('ESP error mapping', () => {
  const table: Array<[string, ReturnType<typeof outcome>, new (...a: never[]) => Error, boolean]> = [
    ['401', outcome(401), InvalidCredentialsError, false],
    ['403', outcome(403), InvalidCredentialsError, false],
    ['400 invalid_grant', outcome(400, {}, { error: 'invalid_grant' }), InvalidCredentialsError, false],
    ['429', outcome(429, { 'retry-after': '7' }), RateLimitedError, true],
    ['500', outcome(500), TransientError, true],
    ['502', outcome(502), TransientError, true],
    ['503', outcome(503), TransientError, true],
    ['408', outcome(408), TransientError, true],
    ['400 validation', outcome(400, {}, { error: { message: 'bad field' } }), RequestRejectedError, false],
    ['404', outcome(404), RequestRejectedError, false],
    ['413', outcome(413), RequestRejectedError, false],
    ['422', outcome(422), RequestRejectedError, false],
  ];
  for (const [label, input, type, retryable] of table) {
    it(`maps ${label} to ${type.name} (retryable: ${retryable})`, () => {
      const err = errorFromResponse(input, 'reason');
      assert.ok(err instanceof type, `${label} became ${err.name}`);
      assert.equal(err.retryable, retryable);
      assert.equal(err.status, input.status);
    });
  }

  const delays: Array<[string, Record<string, string>, number]> = [
    ['Retry-After seconds', { 'retry-after': '7' }, 7_000],
    ['Retry-After fraction', { 'retry-after': '0.25' }, 250],
    ['Retry-After HTTP date', { 'retry-after': new Date(1_000_000 + 30_000).toUTCString() }, 30_000],
    ['RateLimit-Reset delta', { 'ratelimit-reset': '12' }, 12_000],
    ['X-RateLimit-Reset epoch seconds', { 'x-ratelimit-reset': String(1_700_000_005) }, 5_000],
    ['Brevo x-sib-ratelimit-reset delta', { 'x-sib-ratelimit-reset': '9' }, 9_000],
    ['nothing', {}, 1_000],
    ['absurd', { 'retry-after': '999999' }, 15 * 60_000],
  ];
  for (const [label, headers, expected] of delays) {
    it(`reads the delay from ${label}`, () => {
      const now = label.includes('epoch') ? 1_700_000_000_000 : 1_000_000;
      const ms = retryAfterMs(headers, now);
      // HTTP dates have whole seconds.
      if (label.includes('date')) assert.ok(Math.abs(ms - expected) <= 1_000, String(ms));
      else assert.equal(ms, expected);
    });
  }

  it('sanitizes emails, auth header values and planted secrets out of reasons', () => {
    const text =
      'Member jane.doe+news@example.co.uk failed; Authorization: Bearer abc.def-123 key sk_live_PLANTED9';
    const out = sanitize(text, ['sk_live_PLANTED9']);
    assert.ok(!out.includes('jane.doe'), out);
    assert.ok(!out.includes('abc.def-123'), out);
    assert.ok(!out.includes('sk_live_PLANTED9'), out);
    assert.match(out, /\[email\].*Bearer \[redacted\].*\[redacted\]/);
    assert.ok(sanitize('x'.repeat(5000)).length <= 300);
  });

  it('takes out addresses that are not valid ones too: the rows ESPs reject are mostly mistyped', () => {
    // Each with the part that names the person.
    const addresses: Array<[string, string]> = [
      ['info@bücher.de', 'bücher'],
      ['josé@exämple.com', 'josé'],
      ['john.smith@gmail', 'john.smith'],
      ['john.smith@gmail.c', 'john.smith'],
      ['jane%40example.com', 'jane'],
      ['user.name@[192.168.0.1]', 'user.name'],
      ["sean.o'brien@example.com", 'brien'],
      ['María.López@Example.COM', 'López'],
      ['"quoted"@example.com', 'quoted'],
      ['{"email":"jane.doe@example.com"}', 'jane.doe'],
    ];
    for (const [address, person] of addresses) {
      for (const text of [`Invalid email: ${address}`, `A subscription (${address}) could not be updated`]) {
        const out = sanitize(text);
        assert.ok(!/@|%40/i.test(out) && !out.includes(person), `${text} -> ${out}`);
        assert.match(out, /\[email\]/);
      }
    }
    // Text without an address keeps its words: codes, rates, plain sentences.
    assert.equal(sanitize('rate limit: 10 per second @ 2 s'), 'rate limit: 10 per second @ 2 s');
    assert.equal(sanitize('contact_suppressed: cannot be updated'), 'contact_suppressed: cannot be updated');
  });
});

describe('EspHttp against misbehaving servers', () => {
  let server: Server;
  let base: string;
  const secret = 'tok_PLANTED_SECRET_42';
  /** Requests that reached /hang. */
  let hung = 0;
  before(async () => {
    server = createServer((req, res) => {
      switch (req.url) {
        case '/html':
          res.writeHead(502, { 'content-type': 'text/html' });
          return res.end(`<html><body>Bad gateway for ${secret} jane@example.com</body></html>`);
        case '/html-200':
          res.writeHead(200, { 'content-type': 'text/html' });
          return res.end('<html>maintenance</html>');
        case '/truncated':
          res.writeHead(200, { 'content-type': 'application/json' });
          return res.end('{"contacts": [{"id": "1"');
        case '/wrong-type':
          res.writeHead(200, { 'content-type': 'text/plain' });
          return res.end('OK');
        case '/reset':
          return req.socket.destroy();
        case '/hang':
          hung++;
          return; // never answers
        case '/echo-error':
          res.writeHead(400, { 'content-type': 'application/json' });
          return res.end(
            JSON.stringify({ error: { message: `invalid contact jane@example.com with ${secret}` } }),
          );
        case '/empty':
          res.writeHead(204);
          return res.end();
        default:
          res.writeHead(200, { 'content-type': 'application/json' });
          return res.end('{"ok":true}');
      }
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => {
    server.closeAllConnections();
    server.close();
  });

  const http = new EspHttp(300);
  const cases: Array<[string, new (...a: never[]) => Error, RegExp]> = [
    ['/html', TransientError, /502.*HTML/],
    ['/html-200', TransientError, /malformed.*HTML/],
    ['/truncated', TransientError, /malformed.*not valid JSON/],
    ['/wrong-type', TransientError, /malformed/],
    ['/reset', TransientError, /connection failed/],
    ['/hang', TransientError, /did not answer within 300 ms/],
    ['/echo-error', RequestRejectedError, /400.*invalid contact \[email\] with \[redacted\]/],
  ];
  for (const [path, type, message] of cases) {
    it(`turns ${path} into ${type.name} without secrets or emails`, async () => {
      await assert.rejects(
        http.send({ method: 'GET', url: `${base}${path}` }, { secrets: [secret] }),
        (err: unknown) => {
          assert.ok(err instanceof type, `${path}: ${String(err)}`);
          assert.match((err as Error).message, message);
          assert.ok(!(err as Error).message.includes(secret));
          assert.ok(!(err as Error).message.includes('jane@example.com'));
          return true;
        },
      );
    });
  }

  it("a cancelled activity's requests end at once, in flight or waiting for a connection; those waiting are never sent", async () => {
    const patient = new EspHttp(30_000);
    const cancelled = new AbortController();
    setMaxListeners(100, cancelled.signal); // as the activities do: one listener per request
    const before = hung;
    // 64 connections to a host at most: 6 of these wait for one, as writes of many accounts on one
    // ESP host in one worker would.
    const requests = Array.from({ length: 70 }, () =>
      patient.send({ method: 'POST', url: `${base}/hang` }, { signal: cancelled.signal }).then(
        () => 'answered',
        (err: Error) => err.name,
      ),
    );
    while (hung - before < 64) await new Promise((r) => setTimeout(r, 20));
    const abortedAt = Date.now();
    cancelled.abort();
    assert.deepEqual(new Set(await Promise.all(requests)), new Set(['AbortError']));
    assert.ok(Date.now() - abortedAt < 1_000, `ended ${Date.now() - abortedAt} ms after the abort`);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(hung - before, 64, 'a request waiting for a connection was sent after the abort');
  });

  it('accepts an empty 204 and JSON bodies', async () => {
    assert.equal((await http.send({ method: 'DELETE', url: `${base}/empty` })).status, 204);
    assert.deepEqual((await http.send({ method: 'GET', url: `${base}/ok` })).body, { ok: true });
  });
});
