// Findings of the security review that concern the web server as a whole: guessing credentials,
// planted cookies, caching, transport headers, and the codec's answers to bodies that are not JSON.
import { strict as assert } from 'node:assert';
import request from 'supertest';
import { codecPathToken } from '../../src/codec';
import { createApp } from '../../src/web/app';
import type { WebDeps } from '../../src/web/deps';
import { FailedAuthGuard } from '../../src/web/failed-auth';
import { Signer } from '../../src/web/security';
import { temporalEnv } from '../support/temporal';
import { tempStores } from '../support/tmp';
import { webDeps } from '../support/web';

const SECRET = 'test-session-secret-0123456789-abcdef';
const admin = { user: 'ops', password: 'correct horse battery', token: 'tok_0123456789abcdef0123456789' };

async function app(web: Partial<WebDeps['web']> = {}) {
  const env = await temporalEnv();
  return createApp(
    webDeps(await tempStores(), async () => env.connection, {
      web: { publicUrl: 'http://localhost:3000', sessionSecret: SECRET, admin, ...web },
    }),
  );
}

describe('web: guessing credentials costs time', function () {
  this.timeout(30_000);

  it('locks a client out of /admin after 10 wrong passwords, longer each time, even for the right one', async () => {
    let now = 1_000_000;
    const server = await app({ failedAuth: { now: () => now } });
    for (let i = 0; i < 11; i++) await request(server).get('/admin').auth('ops', `guess ${i}`).expect(401);
    // The 11th failure locked the client for 1 s: not even the right password is checked now.
    const locked = await request(server).get('/admin').auth('ops', admin.password).expect(429);
    assert.equal(locked.headers['retry-after'], '1');
    assert.match(locked.text, /Too many failed sign-ins/);
    now += 1_001;
    await request(server).get('/admin').auth('ops', 'guess 12').expect(401);
    const longer = await request(server).get('/admin').auth('ops', admin.password).expect(429);
    assert.equal(longer.headers['retry-after'], '2', 'each failure doubles the wait');
    now += 2_001;
    // The right one, once the wait is over, works and clears the count.
    await request(server).get('/admin').auth('ops', admin.password).expect(200);
    for (let i = 0; i < 10; i++) await request(server).get('/admin').auth('ops', `again ${i}`).expect(401);
    // A browser's first request, without credentials, is not a failure.
    await request(server).get('/admin').expect(401);
    await request(server).get('/admin').auth('ops', admin.password).expect(200);
  });

  it('counts wrong codec tokens and credentials the same way, answering JSON', async () => {
    let now = 1_000_000;
    const server = await app({ failedAuth: { now: () => now } });
    const body = { payloads: [] };
    for (let i = 0; i < 6; i++)
      await request(server).post(`/codec/wrong-token-${i}/decode`).send(body).expect(401);
    for (let i = 0; i < 5; i++)
      await request(server)
        .post('/codec/decode')
        .set('authorization', `Bearer guess-${i}`)
        .send(body)
        .expect(401);
    const locked = await request(server)
      .post(`/codec/${codecPathToken(SECRET)}/decode`)
      .send(body)
      .expect(429)
      .expect('content-type', /json/);
    assert.match(locked.body.error, /too many failed attempts/);
    now += 1_001;
    await request(server)
      .post(`/codec/${codecPathToken(SECRET)}/decode`)
      .send(body)
      .expect(200);
  });

  it('the lock-out grows to its cap and is forgotten after quiet time', () => {
    let now = 0;
    const guard = new FailedAuthGuard({ free: 2, maxLockMs: 60_000, forgetAfterMs: 600_000, now: () => now });
    assert.deepEqual(
      Array.from({ length: 10 }, () => guard.failed('a')),
      [0, 0, 1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000],
    );
    assert.equal(guard.waitMs('b'), 0, 'other clients are not affected');
    now += 600_001;
    assert.equal(guard.waitMs('a'), 0);
    assert.equal(guard.failed('a'), 0, 'a fresh start after quiet time');
  });
});

describe('web: cookies, caching and transport headers', function () {
  this.timeout(30_000);

  it('never takes a CSRF cookie value the client chose', async () => {
    const server = await app();
    const planted = 'A'.repeat(32);
    const page = await request(server)
      .get('/admin')
      .auth('ops', admin.password)
      .set('cookie', `espresso_csrf=${planted}`)
      .expect(200);
    const issued = /espresso_csrf=([^;]+)/.exec(String(page.headers['set-cookie']))?.[1];
    assert.ok(issued && issued !== planted, 'a cookie of the server’s own was issued');
    // A token made for the planted value (as one who planted it could get it) is refused.
    await request(server)
      .post('/admin/configurations/cfg_00000000/disable')
      .auth('ops', admin.password)
      .set('cookie', `espresso_csrf=${planted}`)
      .type('form')
      .send({ _csrf: new Signer(SECRET).sign('csrf', planted) })
      .expect(403);
  });

  it('sends Cache-Control: no-store on pages, and HSTS only where the public URL is HTTPS', async () => {
    const plain = await app();
    for (const path of ['/', '/auth/sandbox/key', '/admin', '/healthz']) {
      const res = await request(plain).get(path).auth('ops', admin.password);
      assert.equal(res.headers['cache-control'], 'no-store', path);
    }
    const home = await request(plain).get('/');
    assert.equal(home.headers['strict-transport-security'], undefined);
    assert.doesNotMatch(home.headers['content-security-policy']!, /upgrade-insecure-requests/);

    const secure = await app({ publicUrl: 'https://espresso.example.com' });
    const https = await request(secure).get('/');
    assert.match(https.headers['strict-transport-security']!, /max-age=/);
    assert.match(https.headers['content-security-policy']!, /upgrade-insecure-requests/);
    // Over HTTPS the cookies are __Host- cookies: Secure, path /, no subdomain can set them.
    const adminPage = await request(secure).get('/admin').auth('ops', admin.password).expect(200);
    assert.match(String(adminPage.headers['set-cookie']), /^__Host-espresso_csrf=[^;]+;.*Secure/);
  });

  it('answers a codec call whose body is not JSON with 400 and a JSON error, not 200 with nothing', async () => {
    const server = await app();
    const path = `/codec/${codecPathToken(SECRET)}/decode`;
    const form = await request(server).post(path).type('form').send({ payloads: 'x' }).expect(400);
    assert.match(form.headers['content-type']!, /json/);
    assert.match(form.body.error, /must be JSON/);
    const broken = await request(server)
      .post(path)
      .set('content-type', 'application/json')
      .send('{"payloads": [')
      .expect(400);
    assert.match(broken.body.error, /must be JSON/);
    // proto3 JSON `{}` is still zero payloads, as the Temporal CLI sends it.
    assert.deepEqual((await request(server).post(path).send({}).expect(200)).body, { payloads: [] });
  });
});
