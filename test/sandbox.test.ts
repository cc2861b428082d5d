import { strict as assert } from 'node:assert';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { sandboxAdmin } from '../src/sandbox/admin';
import { SandboxList, SandboxState } from '../src/sandbox/state';
import { startSandbox, TEST_REDIRECT_URI } from './processors/sandbox-harness';
import { tempDir } from './support/tmp';

type Sandbox = Awaited<ReturnType<typeof startSandbox>>;

const VERIFIER = 'v'.repeat(50);
const challengeOf = (verifier: string) => createHash('sha256').update(verifier).digest('base64url');

/** The consent form as the consent page posts it, approved for acct_demo unless `fields` say otherwise. */
function postConsent(sandbox: Sandbox, fields: Record<string, string> = {}) {
  return fetch(`${sandbox.url}/oauth/authorize`, {
    method: 'POST',
    redirect: 'manual',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      decision: 'approve',
      account: 'acct_demo',
      clientId: 'espresso-sandbox',
      redirectUri: TEST_REDIRECT_URI,
      state: 'st',
      codeChallenge: challengeOf(VERIFIER),
      codeChallengeMethod: 'S256',
      ...fields,
    }),
  });
}

async function approve(sandbox: Sandbox, fields: Record<string, string> = {}) {
  const res = await postConsent(sandbox, fields);
  assert.equal(res.status, 302);
  return new URL(res.headers.get('location')!);
}

/** GET /oauth/authorize with espresso's registered redirect URI and an S256 challenge, unless `params` say otherwise. */
function authorize(sandbox: Sandbox, params: Record<string, string | undefined> = {}) {
  const query = Object.entries({
    response_type: 'code',
    client_id: 'espresso-sandbox',
    redirect_uri: TEST_REDIRECT_URI,
    state: 'st',
    code_challenge: challengeOf(VERIFIER),
    code_challenge_method: 'S256',
    ...params,
  }).filter((entry): entry is [string, string] => entry[1] !== undefined);
  return fetch(`${sandbox.url}/oauth/authorize?${new URLSearchParams(query)}`, { redirect: 'manual' });
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

/** Creates the `lcee` field on the demo account's newsletter list. */
const createLcee = (sandbox: Sandbox) =>
  api(sandbox, '/v1/lists/list_newsletter/fields', { method: 'POST', body: JSON.stringify({ key: 'lcee' }) });

/** Writes one contact's `lcee` value in a batch update of its own. */
const writeLcee = (sandbox: Sandbox, id: string, value: string) =>
  api(sandbox, '/v1/lists/list_newsletter/contacts/batch', {
    method: 'POST',
    body: JSON.stringify({ updates: [{ id, fields: { lcee: value } }] }),
  });

describe('the Sandbox demo account', () => {
  it('README: a demo account with two lists, the newsletter seeded with ESPRESSO_SANDBOX_SEED_CONTACTS contacts', () => {
    for (const contacts of [1000, 25]) {
      const demo = SandboxState.demo(contacts).accounts.get('acct_demo')!;
      assert.deepEqual([...demo.lists.keys()].sort(), ['list_newsletter', 'list_offers']);
      assert.equal(demo.lists.get('list_newsletter')!.size, contacts);
      assert.equal(demo.lists.get('list_offers')!.size, 0);
    }
  });
});

describe('Sandbox ESP', () => {
  let sandbox: Sandbox;
  beforeEach(async () => {
    sandbox = await startSandbox(SandboxState.demo(100));
  });
  afterEach(() => sandbox.stop());

  describe('OAuth', () => {
    it('shows a consent page with Approve and Deny', async () => {
      const res = await authorize(sandbox);
      const html = await res.text();
      assert.equal(res.status, 200);
      assert.match(html, /value="approve"/);
      assert.match(html, /value="deny"/);
      assert.match(html, /Demo Coffee Roasters/);
    });

    it('redirects with error=access_denied and the state when the user denies', async () => {
      const location = await approve(sandbox, { decision: 'deny' });
      assert.equal(location.origin + location.pathname, TEST_REDIRECT_URI);
      assert.equal(location.searchParams.get('error'), 'access_denied');
      assert.equal(location.searchParams.get('state'), 'st');
      assert.equal(location.searchParams.get('code'), null);
    });

    it('accepts a code once, with the right PKCE verifier only', async () => {
      const redirect_uri = TEST_REDIRECT_URI;
      const wrong = (await approve(sandbox)).searchParams.get('code')!;
      const bad = await token(sandbox, {
        grant_type: 'authorization_code',
        code: wrong,
        redirect_uri,
        code_verifier: 'x'.repeat(50),
      });
      assert.deepEqual(bad, { status: 400, body: { error: 'invalid_grant' } });

      const code = (await approve(sandbox)).searchParams.get('code')!;
      const ok = await token(sandbox, {
        grant_type: 'authorization_code',
        code,
        redirect_uri,
        code_verifier: VERIFIER,
      });
      assert.equal(ok.status, 200);
      assert.match(String(ok.body.access_token), /^sbx_at_/);
      const replay = await token(sandbox, {
        grant_type: 'authorization_code',
        code,
        redirect_uri,
        code_verifier: VERIFIER,
      });
      assert.equal(replay.body.error, 'invalid_grant');
    });

    it('rotates refresh tokens: the used one stops working', async () => {
      const code = (await approve(sandbox)).searchParams.get('code')!;
      const first = await token(sandbox, {
        grant_type: 'authorization_code',
        code,
        redirect_uri: TEST_REDIRECT_URI,
        code_verifier: VERIFIER,
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

  describe('OAuth refusals (RFC 6749, RFC 7636, RFC 9700)', () => {
    const UNREGISTERED = [
      'https://attacker.example/auth/sandbox/callback',
      `${TEST_REDIRECT_URI}/more`,
      `${TEST_REDIRECT_URI}?next=https://attacker.example`,
      TEST_REDIRECT_URI.replace('localhost', '127.0.0.1'),
    ];

    /** A refusal that must not go back to the client: an error page, no Location. */
    async function assertErrorPage(res: Response, code: string) {
      assert.equal(res.status, 400);
      assert.equal(res.headers.get('location'), null);
      assert.match(res.headers.get('content-type') ?? '', /text\/html/);
      const html = await res.text();
      assert.match(html, new RegExp(code));
      assert.doesNotMatch(html, /value="approve"/, 'no consent form');
    }

    /** A refusal sent back to the registered redirect URI as error=..., with the state. */
    function assertRedirectedError(res: Response, code: string) {
      assert.equal(res.status, 302);
      const back = new URL(res.headers.get('location')!);
      assert.equal(back.origin + back.pathname, TEST_REDIRECT_URI);
      assert.equal(back.searchParams.get('error'), code);
      assert.equal(back.searchParams.get('state'), 'st');
      assert.equal(back.searchParams.get('code'), null);
    }

    it('authorize: a redirect_uri not registered for the client gets an error page and no redirect', async () => {
      for (const redirect_uri of UNREGISTERED) {
        await assertErrorPage(await authorize(sandbox, { redirect_uri }), 'invalid_request');
      }
      await assertErrorPage(await authorize(sandbox, { redirect_uri: undefined }), 'invalid_request');
      await assertErrorPage(await authorize(sandbox, { client_id: 'someone-else' }), 'invalid_client');
    });

    it('authorize: the consent form posted with an unregistered redirect_uri issues no code and redirects nowhere', async () => {
      const grantsBefore = sandbox.state.tokenGrants;
      for (const redirectUri of UNREGISTERED) {
        for (const decision of ['approve', 'deny']) {
          await assertErrorPage(await postConsent(sandbox, { redirectUri, decision }), 'invalid_request');
        }
      }
      assert.equal(sandbox.state.tokenGrants, grantsBefore);
    });

    it('authorize: without a code_challenge, refused with invalid_request (PKCE is required)', async () => {
      assertRedirectedError(
        await authorize(sandbox, { code_challenge: undefined, code_challenge_method: undefined }),
        'invalid_request',
      );
      assertRedirectedError(await authorize(sandbox, { code_challenge: 'short' }), 'invalid_request');
      assertRedirectedError(
        await postConsent(sandbox, { codeChallenge: '', codeChallengeMethod: '' }),
        'invalid_request',
      );
    });

    it('authorize: the plain code_challenge_method (or none named) is refused with invalid_request', async () => {
      assertRedirectedError(
        await authorize(sandbox, { code_challenge: VERIFIER.slice(0, 43), code_challenge_method: 'plain' }),
        'invalid_request',
      );
      assertRedirectedError(
        await authorize(sandbox, { code_challenge_method: undefined }),
        'invalid_request',
      );
      assertRedirectedError(await postConsent(sandbox, { codeChallengeMethod: 'plain' }), 'invalid_request');
    });

    it("token: a redirect_uri other than the code's, or no longer registered, gets invalid_grant", async () => {
      for (const redirect_uri of [...UNREGISTERED, '']) {
        const code = (await approve(sandbox)).searchParams.get('code')!;
        const res = await token(sandbox, {
          grant_type: 'authorization_code',
          code,
          redirect_uri,
          code_verifier: VERIFIER,
        });
        assert.deepEqual(res, { status: 400, body: { error: 'invalid_grant' } }, redirect_uri);
      }
      // A registration withdrawn between consent and exchange: the code is no good any more.
      const code = (await approve(sandbox)).searchParams.get('code')!;
      sandbox.state.clients.get('espresso-sandbox')!.redirectUris = ['https://elsewhere.example/cb'];
      const res = await token(sandbox, {
        grant_type: 'authorization_code',
        code,
        redirect_uri: TEST_REDIRECT_URI,
        code_verifier: VERIFIER,
      });
      assert.deepEqual(res, { status: 400, body: { error: 'invalid_grant' } });
    });

    it('token: without the code_verifier, with a wrong one or one RFC 7636 does not allow, invalid_grant', async () => {
      const exchange = async (codeChallenge: string, verifier?: string) => {
        const code = (await approve(sandbox, { codeChallenge })).searchParams.get('code')!;
        return token(sandbox, {
          grant_type: 'authorization_code',
          code,
          redirect_uri: TEST_REDIRECT_URI,
          ...(verifier === undefined ? {} : { code_verifier: verifier }),
        });
      };
      const refused = { status: 400, body: { error: 'invalid_grant' } };
      assert.deepEqual(await exchange(challengeOf(VERIFIER)), refused);
      assert.deepEqual(await exchange(challengeOf(VERIFIER), ''), refused);
      assert.deepEqual(await exchange(challengeOf(VERIFIER), 'w'.repeat(50)), refused);
      // The plain method in disguise: the challenge sent as the verifier.
      assert.deepEqual(await exchange(challengeOf(VERIFIER), challengeOf(VERIFIER)), refused);
      // A verifier too short to be one (RFC 7636 4.1: 43-128 characters), even with its own hash.
      assert.deepEqual(await exchange(challengeOf('abc'), 'abc'), refused);
      assert.equal(sandbox.state.tokenGrants, 0);
    });
  });

  describe('admin API', () => {
    it('refuses every /_sandbox request without the admin token or with a wrong one: 401, nothing done', async () => {
      const create = { id: 'acct_intruder', name: 'Intruder', apiKeys: ['intruder-key-1'] };
      const attempts: Array<[string, RequestInit]> = [
        ['/_sandbox/accounts', { method: 'POST', body: JSON.stringify(create) }],
        ['/_sandbox/state', {}],
        ['/_sandbox/accounts/acct_demo/oauth', {}],
        ['/_sandbox/accounts/acct_demo/lists/list_newsletter/history?field=lcee', {}],
        ['/_sandbox/accounts/acct_demo/settings', { method: 'PATCH', body: '{"faults":{"errorRate":1}}' }],
        [
          '/_sandbox/accounts/acct_demo/lists/list_newsletter/seed',
          { method: 'POST', body: '{"contacts":5}' },
        ],
        ['/_sandbox/no-such-route', {}],
      ];
      const wrong = [
        undefined,
        'Bearer ',
        `Bearer ${sandbox.adminToken.slice(0, -1)}`,
        `Bearer ${sandbox.adminToken}x`,
        `Basic ${Buffer.from(`admin:${sandbox.adminToken}`).toString('base64')}`,
        sandbox.adminToken,
        'x-api-key-is-no-admin-token',
      ];
      for (const [path, init] of attempts) {
        for (const authorization of wrong) {
          const res = await fetch(`${sandbox.url}${path}`, {
            ...init,
            headers: {
              'content-type': 'application/json',
              'x-api-key': 'sandbox-demo-key',
              ...(authorization === undefined ? {} : { authorization }),
            },
          });
          const text = await res.text();
          assert.equal(res.status, 401, `${path} with ${authorization}`);
          assert.match(res.headers.get('content-type') ?? '', /application\/json/);
          assert.equal((JSON.parse(text) as { error: { code: string } }).error.code, 'unauthenticated');
          assert.ok(!text.includes(sandbox.adminToken), 'the token is never echoed');
        }
      }
      assert.equal(sandbox.state.accounts.has('acct_intruder'), false);
      const demo = sandbox.state.accounts.get('acct_demo')!;
      assert.equal(demo.settings.faults.errorRate, 0);
      assert.equal(demo.lists.get('list_newsletter')!.size, 100);

      const created = await sandboxAdmin(sandbox, '/accounts', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(create),
      });
      assert.equal(created.status, 201);
      assert.equal(sandbox.state.accounts.has('acct_intruder'), true);
    });
  });

  describe('API', () => {
    it('refuses batches over 500 rows and malformed bodies', async () => {
      await createLcee(sandbox);
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

    it("lists contacts by offset as by cursor, says the list's size with each page, and refuses both at once or a bad offset", async () => {
      type Page = { contacts: Array<{ id: string }>; next_cursor: string | null; total: number };
      const page = async (query: string) => {
        const res = await api(sandbox, `/v1/lists/list_newsletter/contacts?${query}`);
        return { status: res.status, body: (await res.json()) as Page & { error?: { code: string } } };
      };
      const first = await page('limit=30');
      const byCursor = await page(`limit=30&cursor=${first.body.next_cursor}`);
      const byOffset = await page('limit=30&offset=30');
      assert.equal(byOffset.status, 200);
      assert.deepEqual(
        byOffset.body.contacts.map((c) => c.id),
        byCursor.body.contacts.map((c) => c.id),
      );
      assert.equal(byOffset.body.contacts[0]!.id, SandboxList.contactId(30));
      // The list's 100 contacts, whichever page.
      assert.deepEqual([first.body.total, byCursor.body.total, byOffset.body.total], [100, 100, 100]);
      // The list's last contacts, and past its end: no next page.
      assert.equal((await page('limit=30&offset=90')).body.contacts.length, 10);
      assert.equal((await page('limit=30&offset=90')).body.next_cursor, null);
      assert.deepEqual((await page('limit=30&offset=500')).body, {
        contacts: [],
        next_cursor: null,
        total: 100,
      });
      for (const bad of [
        `offset=30&cursor=${first.body.next_cursor}`,
        'offset=-1',
        'offset=3.5',
        'offset=x',
      ]) {
        const refused = await page(`limit=30&${bad}`);
        assert.equal(refused.status, 400, bad);
        assert.equal(refused.body.error?.code, 'invalid_offset', bad);
      }
    });

    it('answers 429 with Retry-After past the per-account request rate', async () => {
      sandbox.state.accounts.get('acct_demo')!.settings.limits.requestsPerSecond = 5;
      const statuses = await Promise.all(Array.from({ length: 8 }, () => api(sandbox, '/v1/account')));
      const limited = statuses.filter((r) => r.status === 429);
      assert.equal(limited.length, 3);
      assert.equal(limited[0]!.headers.get('retry-after'), '1');
    });

    it('records every distinct value written per contact, so conflicting writes show', async () => {
      await createLcee(sandbox);
      const write = (id: string, value: string) => writeLcee(sandbox, id, value);
      await write('ct_0000001', 'first_value_1');
      await write('ct_0000001', 'first_value_1'); // a retry with the same value is no conflict
      await write('ct_0000002', 'value_a');
      await write('ct_0000002', 'value_b');
      const summary = (await (
        await sandboxAdmin(sandbox, '/accounts/acct_demo/lists/list_newsletter/summary?field=lcee')
      ).json()) as { withValue: number; conflicting: number; conflicts: unknown[] };
      assert.equal(summary.withValue, 2);
      assert.equal(summary.conflicting, 1);
      assert.deepEqual(summary.conflicts, [{ contactId: 'ct_0000002', values: ['value_a', 'value_b'] }]);
      const history = (
        await (
          await sandboxAdmin(sandbox, '/accounts/acct_demo/lists/list_newsletter/history?field=lcee')
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
      const bad = await sandboxAdmin(sandbox, '/accounts/acct_demo/settings', {
        method: 'PATCH',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ faults: { errorRate: 2 } }),
      });
      assert.equal(bad.status, 400);
      assert.match(((await bad.json()) as { error: { message: string } }).error.message, /faults\.errorRate/);
      const ok = await sandboxAdmin(sandbox, '/accounts/acct_demo/settings', {
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
    await createLcee(sandbox);
    await writeLcee(sandbox, 'ct_0000007', 'kept_value_7');
    const file = join(await tempDir(), 'sandbox.json');
    await sandbox.state.save(file);
    const restored = await SandboxState.load(file);
    const list = restored.accounts.get('acct_demo')!.lists.get('list_newsletter')!;
    assert.equal(list.size, 100);
    assert.equal(list.values.get('lcee')![6], 'kept_value_7');
    assert.deepEqual(list.history('lcee', 6), ['kept_value_7']);
    assert.ok(list.fields.has('lcee'));
  });

  it('keeps values written out of order, and those written after the list grew, across a snapshot', async () => {
    await createLcee(sandbox);
    const write = (id: string, value: string) => writeLcee(sandbox, id, value);
    await write('ct_0000090', 'value_90');
    await write('ct_0000005', 'value_5');
    sandbox.state.seed('acct_demo', 'list_newsletter', 50);
    assert.equal((await write('ct_0000140', 'value_140')).status, 200);
    const res = await api(sandbox, '/v1/lists/list_newsletter/contacts?limit=1000&offset=0');
    const page = (await res.json()) as {
      contacts: Array<{ id: string; fields: { lcee: string | null } }>;
      total: number;
    };
    const written = (contacts: typeof page.contacts) =>
      contacts.filter((c) => c.fields.lcee !== null).map((c) => [c.id, c.fields.lcee]);
    const expected = [
      ['ct_0000005', 'value_5'],
      ['ct_0000090', 'value_90'],
      ['ct_0000140', 'value_140'],
    ];
    assert.equal(page.total, 150);
    assert.deepEqual(written(page.contacts), expected);
    const file = join(await tempDir(), 'sandbox.json');
    await sandbox.state.save(file);
    const list = (await SandboxState.load(file)).accounts.get('acct_demo')!.lists.get('list_newsletter')!;
    const values = list.values.get('lcee')!;
    assert.deepEqual(
      [4, 89, 139].map((i) => [SandboxList.contactId(i), values[i]]),
      expected,
    );
    assert.equal(values.filter((v) => v !== undefined).length, 3);
    assert.deepEqual(list.history('lcee', 139), ['value_140']);
  });

  it('seeds a million contacts through `espresso sandbox seed`', async function () {
    this.timeout(60_000);
    // The Sandbox runs in this process: the CLI must run asynchronously so it can answer.
    const { execFile } = await import('node:child_process');
    const { promisify } = await import('node:util');
    const { projectRoot } = await import('../src/paths');
    const cli = join(projectRoot, 'dist/src/cli/main.js');
    const dataDir = await tempDir();
    const seed = (env: NodeJS.ProcessEnv) =>
      promisify(execFile)(
        process.execPath,
        [cli, 'sandbox', 'seed', '--contacts', '1000000', '--url', sandbox.url],
        { env: { ...process.env, ESPRESSO_DATA_DIR: dataDir, ...env } },
      );
    const refused = (pattern: RegExp, secret?: string) => (err: unknown) => {
      const { stdout, stderr } = err as { stdout: string; stderr: string };
      assert.match(stderr, pattern);
      if (secret) assert.ok(!(stdout + stderr).includes(secret), 'the token is never echoed');
      return true;
    };
    // No token configured and no key file (no Sandbox ever started with this data directory).
    await assert.rejects(
      seed({ ESPRESSO_SANDBOX_ADMIN_TOKEN: '' }),
      refused(/no Sandbox admin token yet \(.*sandbox-admin\.key/),
    );
    const wrong = 'wrong-sandbox-admin-token-0123456789';
    await assert.rejects(
      seed({ ESPRESSO_SANDBOX_ADMIN_TOKEN: wrong }),
      refused(/the Sandbox refused: the Sandbox admin API needs its admin token/, wrong),
    );
    assert.equal(sandbox.state.accounts.get('acct_demo')!.lists.get('list_newsletter')!.size, 100);
    const out = await seed({ ESPRESSO_SANDBOX_ADMIN_TOKEN: sandbox.adminToken });
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
