import { strict as assert } from 'node:assert';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { SandboxList, SandboxState } from '../src/sandbox/state';
import { startSandbox } from './processors/sandbox-harness';
import { tempDir } from './support/tmp';

type Sandbox = Awaited<ReturnType<typeof startSandbox>>;

async function approve(sandbox: Sandbox, opts: { decision?: string; codeChallenge?: string } = {}) {
  const res = await fetch(`${sandbox.url}/oauth/authorize`, {
    method: 'POST',
    redirect: 'manual',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      decision: opts.decision ?? 'approve',
      account: 'acct_demo',
      clientId: 'espresso-sandbox',
      redirectUri: 'http://localhost:3000/auth/sandbox/callback',
      state: 'st',
      codeChallenge: opts.codeChallenge ?? '',
    }),
  });
  assert.equal(res.status, 302);
  return new URL(res.headers.get('location')!);
}

async function token(sandbox: Sandbox, form: Record<string, string>) {
  const res = await fetch(`${sandbox.url}/oauth/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      client_id: 'espresso-sandbox',
      client_secret: 'espresso-sandbox-secret',
      ...form,
    }),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

const api = (sandbox: Sandbox, path: string, init: RequestInit = {}) =>
  fetch(`${sandbox.url}${path}`, {
    ...init,
    headers: { 'x-api-key': 'sandbox-demo-key', 'content-type': 'application/json', ...init.headers },
  });

describe('Sandbox ESP', () => {
  let sandbox: Sandbox;
  beforeEach(async () => {
    sandbox = await startSandbox(SandboxState.demo(100));
  });
  afterEach(() => sandbox.stop());

  describe('OAuth', () => {
    it('shows a consent page with Approve and Deny', async () => {
      const res = await fetch(
        `${sandbox.url}/oauth/authorize?response_type=code&client_id=espresso-sandbox&redirect_uri=${encodeURIComponent('http://localhost/cb')}&state=x`,
      );
      const html = await res.text();
      assert.equal(res.status, 200);
      assert.match(html, /value="approve"/);
      assert.match(html, /value="deny"/);
      assert.match(html, /Demo Coffee Roasters/);
    });

    it('redirects with error=access_denied and the state when the user denies', async () => {
      const location = await approve(sandbox, { decision: 'deny' });
      assert.equal(location.searchParams.get('error'), 'access_denied');
      assert.equal(location.searchParams.get('state'), 'st');
      assert.equal(location.searchParams.get('code'), null);
    });

    it('accepts a code once, with the right PKCE verifier only', async () => {
      const verifier = 'v'.repeat(50);
      const challenge = createHash('sha256').update(verifier).digest('base64url');
      const redirect_uri = 'http://localhost:3000/auth/sandbox/callback';
      const wrong = (await approve(sandbox, { codeChallenge: challenge })).searchParams.get('code')!;
      const bad = await token(sandbox, {
        grant_type: 'authorization_code',
        code: wrong,
        redirect_uri,
        code_verifier: 'x'.repeat(50),
      });
      assert.deepEqual(bad, { status: 400, body: { error: 'invalid_grant' } });

      const code = (await approve(sandbox, { codeChallenge: challenge })).searchParams.get('code')!;
      const ok = await token(sandbox, {
        grant_type: 'authorization_code',
        code,
        redirect_uri,
        code_verifier: verifier,
      });
      assert.equal(ok.status, 200);
      assert.match(String(ok.body.access_token), /^sbx_at_/);
      const replay = await token(sandbox, {
        grant_type: 'authorization_code',
        code,
        redirect_uri,
        code_verifier: verifier,
      });
      assert.equal(replay.body.error, 'invalid_grant');
    });

    it('rotates refresh tokens: the used one stops working', async () => {
      const code = (await approve(sandbox)).searchParams.get('code')!;
      const first = await token(sandbox, {
        grant_type: 'authorization_code',
        code,
        redirect_uri: 'http://localhost:3000/auth/sandbox/callback',
      });
      const refreshed = await token(sandbox, {
        grant_type: 'refresh_token',
        refresh_token: String(first.body.refresh_token),
      });
      assert.equal(refreshed.status, 200);
      assert.notEqual(refreshed.body.refresh_token, first.body.refresh_token);
      const again = await token(sandbox, {
        grant_type: 'refresh_token',
        refresh_token: String(first.body.refresh_token),
      });
      assert.equal(again.body.error, 'invalid_grant');
    });

    it('refuses a wrong client secret with invalid_client', async () => {
      const res = await token(sandbox, {
        grant_type: 'refresh_token',
        refresh_token: 'x',
        client_secret: 'nope',
      });
      assert.deepEqual(res, { status: 401, body: { error: 'invalid_client' } });
    });
  });

  describe('API', () => {
    it('refuses batches over 500 rows and malformed bodies', async () => {
      await api(sandbox, '/v1/lists/list_newsletter/fields', {
        method: 'POST',
        body: JSON.stringify({ key: 'lcee' }),
      });
      const updates = Array.from({ length: 501 }, (_, i) => ({
        id: SandboxList.contactId(i),
        fields: { lcee: 'abcdefgh' },
      }));
      const big = await api(sandbox, '/v1/lists/list_newsletter/contacts/batch', {
        method: 'POST',
        body: JSON.stringify({ updates }),
      });
      assert.equal(big.status, 413);
      const broken = await api(sandbox, '/v1/lists/list_newsletter/contacts/batch', {
        method: 'POST',
        body: '{"updates": [',
      });
      assert.equal(broken.status, 400);
      assert.equal(((await broken.json()) as { error: { code: string } }).error.code, 'invalid_json');
    });

    it('answers 429 with Retry-After past the per-account request rate', async () => {
      sandbox.state.accounts.get('acct_demo')!.settings.limits.requestsPerSecond = 5;
      const statuses = await Promise.all(Array.from({ length: 8 }, () => api(sandbox, '/v1/account')));
      const limited = statuses.filter((r) => r.status === 429);
      assert.equal(limited.length, 3);
      assert.equal(limited[0]!.headers.get('retry-after'), '1');
    });

    it('records every distinct value written per contact, so conflicting writes show', async () => {
      await api(sandbox, '/v1/lists/list_newsletter/fields', {
        method: 'POST',
        body: JSON.stringify({ key: 'lcee' }),
      });
      const write = (id: string, value: string) =>
        api(sandbox, '/v1/lists/list_newsletter/contacts/batch', {
          method: 'POST',
          body: JSON.stringify({ updates: [{ id, fields: { lcee: value } }] }),
        });
      await write('ct_0000001', 'first_value_1');
      await write('ct_0000001', 'first_value_1'); // a retry with the same value is no conflict
      await write('ct_0000002', 'value_a');
      await write('ct_0000002', 'value_b');
      const summary = (await (
        await fetch(`${sandbox.url}/_sandbox/accounts/acct_demo/lists/list_newsletter/summary?field=lcee`)
      ).json()) as { withValue: number; conflicting: number; conflicts: unknown[] };
      assert.equal(summary.withValue, 2);
      assert.equal(summary.conflicting, 1);
      assert.deepEqual(summary.conflicts, [{ contactId: 'ct_0000002', values: ['value_a', 'value_b'] }]);
      const history = (
        await (
          await fetch(`${sandbox.url}/_sandbox/accounts/acct_demo/lists/list_newsletter/history?field=lcee`)
        ).text()
      )
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l));
      assert.deepEqual(history, [
        { contactId: 'ct_0000001', current: 'first_value_1', values: ['first_value_1'] },
        { contactId: 'ct_0000002', current: 'value_b', values: ['value_a', 'value_b'] },
      ]);
    });

    it('changes limits and faults through the admin endpoint, validating them', async () => {
      const bad = await fetch(`${sandbox.url}/_sandbox/accounts/acct_demo/settings`, {
        method: 'PATCH',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ faults: { errorRate: 2 } }),
      });
      assert.equal(bad.status, 400);
      assert.match(((await bad.json()) as { error: { message: string } }).error.message, /faults\.errorRate/);
      const ok = await fetch(`${sandbox.url}/_sandbox/accounts/acct_demo/settings`, {
        method: 'PATCH',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ faults: { errorRate: 1 } }),
      });
      assert.equal(ok.status, 200);
      const res = await api(sandbox, '/v1/account');
      assert.ok([500, 503].includes(res.status));
    });
  });

  it('keeps its state across a restart through a snapshot file', async () => {
    await api(sandbox, '/v1/lists/list_newsletter/fields', {
      method: 'POST',
      body: JSON.stringify({ key: 'lcee' }),
    });
    await api(sandbox, '/v1/lists/list_newsletter/contacts/batch', {
      method: 'POST',
      body: JSON.stringify({ updates: [{ id: 'ct_0000007', fields: { lcee: 'kept_value_7' } }] }),
    });
    const file = join(await tempDir(), 'sandbox.json');
    await sandbox.state.save(file);
    const restored = await SandboxState.load(file);
    const list = restored.accounts.get('acct_demo')!.lists.get('list_newsletter')!;
    assert.equal(list.size, 100);
    assert.equal(list.values.get('lcee')![6], 'kept_value_7');
    assert.deepEqual(list.history('lcee', 6), ['kept_value_7']);
    assert.ok(list.fields.has('lcee'));
  });

  it('seeds a million contacts through `espresso sandbox seed`', async function () {
    this.timeout(60_000);
    // The Sandbox runs in this process: the CLI must run asynchronously so it can answer.
    const { execFile } = await import('node:child_process');
    const { promisify } = await import('node:util');
    const { projectRoot } = await import('../src/paths');
    const cli = join(projectRoot, 'dist/src/cli/main.js');
    const out = await promisify(execFile)(process.execPath, [
      cli,
      'sandbox',
      'seed',
      '--contacts',
      '1000000',
      '--url',
      sandbox.url,
    ]);
    assert.match(out.stdout, /seeded 1000000 contacts into acct_demo\/list_newsletter/);
    assert.equal(sandbox.state.accounts.get('acct_demo')!.lists.get('list_newsletter')!.size, 1_000_100);
    await assert.rejects(
      promisify(execFile)(process.execPath, [cli, 'sandbox', 'seed', '--contacts', 'lots']),
      (err: unknown) => {
        assert.match((err as { stderr: string }).stderr, /--contacts must be a positive whole number/);
        return true;
      },
    );
  });
});
