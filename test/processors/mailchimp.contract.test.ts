import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { InvalidCredentialsError, RateLimitedError, TransientError } from '../../src/processors/errors';
import { MailchimpProcessor } from '../../src/processors/mailchimp';
import type { ProcessorTarget } from '../../src/processors/types';
import type { FakeMailchimp } from '../fakes/mailchimp-server';
import { OpenApiSpec } from '../support/openapi';
import { processorContract } from './contract';
import { mailchimpHarness, type MailchimpHarness } from './mailchimp-harness';

const value = () => randomBytes(16).toString('base64url');

/** Every fake this file starts: their recorded requests are checked against Mailchimp's document. */
const fakes: FakeMailchimp[] = [];
const harness = async () => {
  const h = await mailchimpHarness();
  fakes.push(h.fake);
  return h;
};

processorContract('Mailchimp', harness, { refreshTokens: false });

describe('Mailchimp processor', function () {
  this.timeout(60_000);
  let h: MailchimpHarness;
  before(async () => {
    h = await harness();
  });
  after(() => h.stop());

  const ready = async (contacts = 0) => {
    const target = await h.connectWithApiKey();
    await h.processor.maintain(target);
    const emails = await h.seed(target, contacts);
    return { target, emails, list: h.fake.lists.get(target.espListId!)! };
  };
  const posts = (target: ProcessorTarget) =>
    h.fake.requests.filter((r) => r.method === 'POST' && r.url.startsWith(`/3.0/lists/${target.espListId}?`));

  describe('descriptor', () => {
    it('names the field LCEE and links use the merge tag *|LCEE|*', () => {
      assert.equal(h.processor.fieldName(), 'LCEE');
      assert.equal(h.processor.descriptor.mergeTag(h.processor.fieldName()), '*|LCEE|*');
      // Merge tags are at most 10 characters, upper case.
      assert.equal(h.processor.fieldName('liveconnect-id-x'), 'LIVECONNEC');
      const d = h.processor.descriptor;
      assert.equal(d.maxBatchSize, 500);
      assert.ok(d.concurrency < 10, 'under the 10 simultaneous connections Mailchimp allows');
    });

    it('offers OAuth only when the app is registered', () => {
      const keyOnly = new MailchimpProcessor({ secrets: h.secrets });
      assert.equal(keyOnly.descriptor.oauth2, undefined);
      assert.equal(keyOnly.descriptor.apiKey?.label, 'Mailchimp API key');
      assert.throws(() => keyOnly.authorizationRequest('https://x.test/cb', 's'));
      const url = new URL(h.processor.authorizationRequest('https://x.test/cb', 's').url);
      assert.equal(`${url.origin}${url.pathname}`, `${h.fake.url}/oauth2/authorize`);
      assert.equal(url.searchParams.get('code_challenge'), null);
      assert.equal(url.searchParams.get('scope'), null);
    });
  });

  describe('data centers', () => {
    it('sends an API key to the data center its suffix names', async () => {
      const { target } = await ready();
      const { account } = await h.processor.connectWithApiKey(h.fake.apiKey);
      assert.ok(account.lists.some((l) => l.id === target.espListId));
      assert.equal(account.apiBaseUrl, `${h.fake.url}/us7/3.0`);
      assert.equal(account.accountId, h.fake.accountId);
      assert.equal(account.accountLabel, 'Example Publisher');
      const real = new MailchimpProcessor({ secrets: h.secrets });
      // Production default: https://<dc>.api.mailchimp.com/3.0 (checked without a request).
      assert.equal(
        (real as unknown as { apiUrl: string }).apiUrl.replace('{dc}', 'us7'),
        'https://us7.api.mailchimp.com/3.0',
      );
    });

    it('refuses a key for another data center, or without one, as invalid credentials', async () => {
      const wrongDc = h.fake.apiKey.replace(/-us7$/, '-us9');
      await assert.rejects(h.processor.connectWithApiKey(wrongDc), InvalidCredentialsError);
      await assert.rejects(
        h.processor.connectWithApiKey(h.fake.apiKey.replace(/-us7$/, '')),
        (err: unknown) => err instanceof InvalidCredentialsError && !err.message.includes(h.fake.apiKey),
      );
    });
  });

  describe('listing', () => {
    it('pages 1000 members at a time (Mailchimp maximum) with a cursor that is only an offset', async () => {
      const { target, emails } = await ready(2_100);
      const sizes: number[] = [];
      const cursors: string[] = [];
      let cursor: string | undefined;
      do {
        const page = await h.processor.listPage(target, cursor, 'full');
        sizes.push(page.contacts.length);
        cursor = page.nextCursor;
        if (cursor) cursors.push(cursor);
      } while (cursor);
      assert.deepEqual(sizes, [1000, 1000, 100]);
      assert.deepEqual(cursors, ['1000', '2000']);
      const gets = h.fake.requests.filter((r) => r.url.startsWith(`/3.0/lists/${target.espListId}/members?`));
      for (const r of gets) assert.equal(new URL(r.url, 'http://x').searchParams.get('count'), '1000');
      assert.equal(emails.length, 2_100);
    });

    it('turns a bad-shaped or non-JSON 2xx body into TransientError', async () => {
      const { target } = await ready(3);
      for (const [type, text] of [
        ['application/json', '{"members":"nope"}'],
        ['application/json', '{"members":[{"merge_fields":{}}]}'],
        ['text/html', '<html>maintenance</html>'],
      ] as const) {
        // Enough for the first call and its two quick retries (HTTP-level malformed bodies).
        h.fake.respondWith = { status: 200, type, text, times: 3 };
        try {
          await assert.rejects(h.processor.listPage(target, undefined, 'full'), TransientError);
        } finally {
          h.fake.respondWith = undefined;
        }
      }
    });
  });

  describe('writing', () => {
    it('never sends more than 500 members in one request', async () => {
      const { target, emails } = await ready(1_201);
      const results = await h.processor.writeValues(
        target,
        emails.map((contactId) => ({ contactId, value: value() })),
      );
      assert.ok(results.every((r) => r.status === 'updated'));
      const sizes = posts(target).map((r) => (r.body as { members: unknown[] }).members.length);
      assert.deepEqual(
        sizes.sort((a, b) => b - a),
        [500, 500, 201],
      );
    });

    it('rejects a deleted member and an unknown address instead of adding them', async () => {
      const { target, emails, list } = await ready(5);
      h.fake.deleteMember(list, emails[1]!);
      const stranger = 'stranger@example.com';
      const results = await h.processor.writeValues(target, [
        ...emails.map((contactId) => ({ contactId, value: value() })),
        { contactId: stranger, value: value() },
      ]);
      const status = Object.fromEntries(results.map((r) => [r.contactId, r.status]));
      assert.equal(status[emails[1]!], 'rejected');
      assert.equal(status[stranger], 'rejected');
      assert.equal(results.filter((r) => r.status === 'updated').length, 4);
      assert.equal(list.byEmail.has(emails[1]!), false);
      assert.equal(list.byEmail.has(stranger), false);
      assert.equal(list.members.length, 4);
      for (const r of results) {
        if (r.status === 'rejected') assert.ok(!r.reason.includes('@'), r.reason);
      }
    });

    it('rejects and archives an address Mailchimp adds as a new member (only ever unsubscribed)', async () => {
      const { target, emails, list } = await ready(2);
      const archivedBefore = h.fake.archived.length;
      const results = await h.processor.writeValues(target, [
        { contactId: emails[0]!, value: value() },
        { contactId: 'newcomer@example.com', value: value() },
      ]);
      assert.deepEqual(
        results.map((r) => r.status),
        ['updated', 'rejected'],
      );
      // Mailchimp added it with `status_if_new`, so unsubscribed: no newsletter ever goes to it...
      const answer = posts(target)[0]!.response as { new_members: Array<{ status: string }> };
      assert.deepEqual(
        answer.new_members.map((m) => m.status),
        ['unsubscribed'],
      );
      // ...and espresso archived it again at once: it never adds people to an audience.
      assert.deepEqual(h.fake.archived.slice(archivedBefore), ['newcomer@example.com']);
      assert.equal(list.byEmail.has('newcomer@example.com'), false);
    });

    it('sends status_if_new on every row, as the reference requires', async () => {
      const { target, emails } = await ready(3);
      await h.processor.writeValues(
        target,
        emails.map((contactId) => ({ contactId, value: value() })),
      );
      const members = (posts(target).at(-1)!.body as { members: Array<Record<string, unknown>> }).members;
      assert.deepEqual(
        members.map((m) => m.status_if_new),
        ['unsubscribed', 'unsubscribed', 'unsubscribed'],
      );
    });

    it('leaves subscription status alone (an unsubscribed member stays unsubscribed)', async () => {
      const { target, emails, list } = await ready(2);
      list.byEmail.get(emails[0]!)!.status = 'unsubscribed';
      await h.processor.writeValues(target, [{ contactId: emails[0]!, value: value() }]);
      assert.equal(list.byEmail.get(emails[0]!)!.status, 'unsubscribed');
      const member = (posts(target)[0]!.body as { members: Array<Record<string, unknown>> }).members[0]!;
      assert.deepEqual(Object.keys(member).sort(), ['email_address', 'merge_fields', 'status_if_new']);
    });

    it("keeps at most 8 requests in flight when answers are slow, under Mailchimp's 10 connections", async () => {
      const { target, emails } = await ready(12);
      const before = h.fake.requests.length;
      h.fake.answerDelayMs = 1_000;
      h.fake.mostInFlight = 0;
      try {
        const results = await Promise.all(
          emails.map((email) => h.processor.writeValues(target, [{ contactId: email, value: value() }])),
        );
        assert.deepEqual(
          results.flat().map((r) => r.status),
          emails.map(() => 'updated'),
        );
      } finally {
        h.fake.answerDelayMs = 0;
      }
      assert.equal(h.fake.mostInFlight, h.processor.descriptor.concurrency);
      assert.deepEqual(
        h.fake.requests.slice(before).filter((r) => r.status === 429),
        [],
      );
    });

    it('treats a 429 without a delay as a one-second wait', async () => {
      const { target, emails } = await ready(1);
      h.fake.rateLimited = true;
      try {
        await assert.rejects(
          h.processor.writeValues(target, [{ contactId: emails[0]!, value: value() }]),
          (err: unknown) => err instanceof RateLimitedError && err.retryAfterMs === 1000,
        );
      } finally {
        h.fake.rateLimited = false;
      }
    });
  });

  describe('OAuth', () => {
    const connect = async () => {
      const redirectUri = 'http://127.0.0.1:9/auth/mailchimp/callback';
      const { url, codeVerifier } = h.processor.authorizationRequest(redirectUri, 'state-1');
      assert.equal(codeVerifier, undefined);
      const consent = await fetch(url, { redirect: 'manual' });
      assert.equal(consent.status, 302);
      const back = new URL(consent.headers.get('location')!);
      assert.equal(back.searchParams.get('state'), 'state-1');
      return h.processor.completeAuthorization(back.searchParams.get('code')!, redirectUri);
    };

    it('authorize -> code -> token -> metadata gives the data center, where requests then go', async () => {
      const grants = h.fake.tokenGrants;
      const { credentials, account } = await connect();
      assert.equal(h.fake.tokenGrants, grants + 1);
      // Mailchimp tokens do not expire (expires_in: 0) and there is no refresh token.
      assert.deepEqual(Object.keys(JSON.parse(JSON.stringify(credentials))).sort(), ['accessToken', 'kind']);
      assert.equal(account.apiBaseUrl, `${h.fake.url}/us7/3.0`);
      assert.equal(account.accountId, h.fake.accountId);
      const target = await h.newTarget(credentials, account.apiBaseUrl!);
      const before = h.fake.requests.length;
      assert.equal((await h.processor.maintain(target)).credentials, 'valid');
      await h.fake.seed(h.fake.lists.get(target.espListId!)!, 3);
      assert.equal((await h.processor.listPage(target, undefined, 'incremental')).contacts.length, 3);
      const sent = h.fake.requests.slice(before);
      assert.ok(sent.length >= 3);
      for (const r of sent) {
        assert.equal(r.status, 200);
        assert.match(String(r.headers.authorization), /^Bearer /);
      }
    });

    it('a revoked token is InvalidCredentialsError without the token in the message', async () => {
      const { credentials, account } = await connect();
      const target = await h.newTarget(credentials, account.apiBaseUrl!);
      h.fake.revokeTokens();
      const token = credentials.kind === 'oauth2' ? credentials.accessToken : '';
      for (const attempt of [
        () => h.processor.maintain(target),
        () => h.processor.listPage(target, undefined, 'full'),
      ]) {
        await assert.rejects(attempt(), (err: unknown) => {
          assert.ok(err instanceof InvalidCredentialsError, String(err));
          assert.ok(!err.message.includes(token));
          return true;
        });
      }
    });
  });
});

describe('Mailchimp fake: refuses what Mailchimp refuses, from the batch request the processor sends', () => {
  let h: MailchimpHarness;
  before(async () => {
    // Not in `fakes`: the requests below are made by hand, not by the processor.
    h = await mailchimpHarness();
  });
  after(() => h.stop());

  it('accepts the processor request as sent, and refuses it with 501 members or a row without status_if_new', async () => {
    const target = await h.connectWithApiKey();
    await h.processor.maintain(target);
    const emails = await h.seed(target, 501);
    await h.processor.writeValues(target, [{ contactId: emails[0]!, value: value() }]);
    const sent = h.fake.requests.filter((r) => r.method === 'POST').at(-1)!;
    const body = sent.body as { members: Array<Record<string, unknown>> };
    const resend = async (members: Array<Record<string, unknown>>) => {
      const res = await fetch(`${h.fake.url}/us7${sent.url}`, {
        method: 'POST',
        headers: {
          authorization: String(sent.headers.authorization),
          'content-type': String(sent.headers['content-type']),
        },
        body: JSON.stringify({ ...body, members }),
      });
      return { status: res.status, body: (await res.json()) as { errors?: Array<{ field: string }> } };
    };
    const row = body.members[0]!;
    assert.equal((await resend([row])).status, 200);
    const tooMany = await resend(emails.map((email) => ({ ...row, email_address: email })));
    assert.equal(tooMany.status, 400);
    assert.equal(tooMany.body.errors?.[0]?.field, 'members');
    const { status_if_new: _dropped, ...withoutStatus } = row;
    const noStatus = await resend([withoutStatus]);
    assert.equal(noStatus.status, 400);
    assert.match(String(noStatus.body.errors?.[0]?.field), /status$/);
  });
});

describe('Mailchimp fake: counts simultaneous connections', () => {
  it('answers the 11th request in flight 429, with the problem body and no delay header', async () => {
    // Not in `fakes`: the requests below are made by hand, not by the processor.
    const h = await mailchimpHarness();
    try {
      h.fake.answerDelayMs = 500;
      const authorization = `Basic ${Buffer.from(`any:${h.fake.apiKey}`).toString('base64')}`;
      const answers = await Promise.all(
        Array.from({ length: 12 }, () => fetch(`${h.fake.url}/us7/3.0/`, { headers: { authorization } })),
      );
      const statuses = answers.map((r) => r.status).sort();
      assert.deepEqual(statuses, [...Array(10).fill(200), 429, 429]);
      for (const refused of answers.filter((r) => r.status === 429)) {
        assert.deepEqual(
          [...refused.headers.keys()].filter((k) => /rate|retry/i.test(k)),
          [],
        );
        const body = (await refused.json()) as { title: string; detail: string };
        assert.equal(body.title, 'Too Many Requests');
        assert.match(body.detail, /10 simultaneous connections/);
      }
      // Once the answers are sent, the connections are free again.
      assert.equal((await fetch(`${h.fake.url}/us7/3.0/`, { headers: { authorization } })).status, 200);
    } finally {
      await h.stop();
    }
  });
});

describe('Mailchimp requests against the official OpenAPI document', () => {
  it('every request matched the document, and so did every answer of the fake', () => {
    const spec = new OpenApiSpec('mailchimp.com');
    const all = fakes.flatMap((f) => f.requests);
    assert.ok(all.length > 50, `only ${all.length} requests recorded`);
    const problems = all.flatMap((r) => spec.requestProblems(r));
    assert.deepEqual(problems, []);
    const answers = all
      .filter((r) => r.status >= 200 && r.status < 300)
      .flatMap((r) => spec.responseProblems(r.method, r.url, r.status, r.response));
    assert.deepEqual(answers, []);
    const routes = new Set(all.map((r) => `${r.method} ${spec.route(r.method, r.url)}`));
    for (const op of [
      'GET /',
      'GET /lists',
      'GET /lists/{list_id}/merge-fields',
      'POST /lists/{list_id}/merge-fields',
      'GET /lists/{list_id}/members',
      'POST /lists/{list_id}',
    ]) {
      assert.ok(routes.has(op), `${op} was never exercised`);
    }
  });
});
