// The processor contract: every ESP processor passes it against its fake server.
import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { InvalidCredentialsError, RateLimitedError } from '../../src/processors/errors';
import type { ContactUpdate, Credentials, ContactRef, ProcessorTarget } from '../../src/processors/types';
import type { ProcessorHarness } from './harness';

const value = () => randomBytes(16).toString('base64url');

/** Every contact of every page, in listing order. */
async function listContacts(h: ProcessorHarness, target: ProcessorTarget, mode: 'incremental' | 'full') {
  const contacts: ContactRef[] = [];
  let cursor: string | undefined;
  let pages = 0;
  do {
    const page = await h.processor.listPage(target, cursor, mode);
    contacts.push(...page.contacts);
    cursor = page.nextCursor;
    assert.ok(++pages < 10_000, 'listing does not end');
  } while (cursor);
  return { contacts, pages };
}

async function listAll(h: ProcessorHarness, target: ProcessorTarget, mode: 'incremental' | 'full') {
  return (await listContacts(h, target, mode)).contacts.map((c) => c.contactId);
}

/** Every value written is the one the ESP holds: none lost, none swapped between contacts. */
async function assertHeld(h: ProcessorHarness, target: ProcessorTarget, written: ContactUpdate[]) {
  const wrong: string[] = [];
  for (const u of written) {
    const held = await h.valueOf(target, u.contactId);
    if (held !== u.value) wrong.push(`${u.contactId}: holds ${held}, written ${u.value}`);
  }
  assert.deepEqual(wrong, [], `${wrong.length} of ${written.length} values not held`);
}

/**
 * `refreshTokens: false` for ESPs whose tokens never expire or that have no OAuth: the refresh
 * tests do not apply to them (their harness has no connectWithOAuth).
 */
export function processorContract(
  name: string,
  makeHarness: () => Promise<ProcessorHarness>,
  options: { refreshTokens: boolean } = { refreshTokens: true },
): void {
  describe(`processor contract: ${name}`, function () {
    this.timeout(60_000);
    let h: ProcessorHarness;
    before(async () => {
      h = await makeHarness();
    });
    after(() => h.stop());

    describe('credentials', () => {
      it('accepts a valid API key and describes the account and its lists', async () => {
        const { credentials, account } = await h.processor.connectWithApiKey(
          (
            JSON.parse(await h.secrets.get((await h.connectWithApiKey()).credentialsSecretId)) as {
              apiKey: string;
            }
          ).apiKey,
        );
        assert.equal(credentials.kind, 'apiKey');
        assert.ok(account.accountId);
        assert.ok(account.accountLabel);
        assert.ok(Array.isArray(account.lists));
      });

      it('refuses an invalid key with InvalidCredentialsError that does not repeat the key', async () => {
        await assert.rejects(h.processor.connectWithApiKey(h.invalidApiKey), (err: unknown) => {
          assert.ok(err instanceof InvalidCredentialsError, String(err));
          assert.ok(!err.message.includes(h.invalidApiKey), err.message);
          assert.equal(err.retryable, false);
          return true;
        });
      });

      it('reports a stored key the ESP no longer accepts as invalid credentials, and creates no field', async () => {
        const target = await h.connectWithApiKey();
        const creds = JSON.parse(await h.secrets.get(target.credentialsSecretId)) as { apiKey: string };
        await h.secrets.put(
          target.credentialsSecretId,
          JSON.stringify({ ...creds, apiKey: h.invalidApiKey }),
        );
        await assert.rejects(h.processor.maintain(target), (err: unknown) => {
          assert.ok(err instanceof InvalidCredentialsError, String(err));
          assert.ok(!err.message.includes(h.invalidApiKey), err.message);
          return true;
        });
        assert.equal(await h.fieldExists(target), false);
      });
    });

    describe('the custom field', () => {
      it('is created once, found afterwards, and re-created after deletion', async () => {
        const target = await h.connectWithApiKey();
        assert.equal((await h.processor.maintain(target)).field, 'created');
        assert.ok(await h.fieldExists(target));
        assert.equal((await h.processor.maintain(target)).field, 'exists');
        await h.deleteField(target);
        assert.equal(await h.fieldExists(target), false);
        const report = await h.processor.maintain(target);
        assert.deepEqual(report, { credentials: 'valid', field: 'created', fieldName: target.fieldName });
        assert.ok(await h.fieldExists(target));
      });
    });

    describe('listing contacts', () => {
      it('pages through every contact in full mode, each once', async () => {
        const target = await h.connectWithApiKey();
        await h.processor.maintain(target);
        const seeded = await h.seed(target, 2_345);
        const listed = await listAll(h, target, 'full');
        assert.equal(listed.length, seeded.length);
        assert.deepEqual(new Set(listed), new Set(seeded));
      });

      it('lists only contacts without a value in incremental mode', async () => {
        const target = await h.connectWithApiKey();
        await h.processor.maintain(target);
        const seeded = await h.seed(target, 1_200);
        // Every other contact, so that every page of the listings below holds both kinds.
        const filled = seeded
          .filter((_, i) => i % 2 === 0)
          .map((contactId) => ({ contactId, value: value() }));
        const results = await h.processor.writeValues(target, filled);
        assert.ok(results.every((r) => r.status === 'updated'));
        await assertHeld(h, target, filled);
        const listed = await listAll(h, target, 'incremental');
        assert.deepEqual(new Set(listed), new Set(seeded.filter((_, i) => i % 2 === 1)));
        // Full listings say, on every page, which value each contact holds, so it is never replaced.
        const full = await listContacts(h, target, 'full');
        assert.equal(full.contacts.length, seeded.length);
        assert.ok(full.pages > 1, `${full.pages} page: the check must cross pages`);
        const written = new Map(filled.map((u) => [u.contactId, u.value]));
        const wrong = full.contacts.filter((c) => c.currentValue !== written.get(c.contactId));
        assert.deepEqual(
          wrong.map((c) => `${c.contactId}: listed ${c.currentValue}, written ${written.get(c.contactId)}`),
          [],
        );
      });
    });

    describe('batch updates', () => {
      it('writes every value across several ESP-sized batches, results in input order', async () => {
        const target = await h.connectWithApiKey();
        await h.processor.maintain(target);
        const seeded = await h.seed(target, h.processor.descriptor.maxBatchSize * 2 + 7);
        const updates: ContactUpdate[] = seeded.map((contactId) => ({ contactId, value: value() }));
        const results = await h.processor.writeValues(target, updates);
        assert.deepEqual(
          results.map((r) => r.contactId),
          seeded,
        );
        assert.ok(results.every((r) => r.status === 'updated'));
        await assertHeld(h, target, updates);
      });

      it('reports per-row rejections with the ESP reason and updates the other rows', async () => {
        const target = await h.connectWithApiKey();
        await h.processor.maintain(target);
        const seeded = await h.seed(target, 50);
        await h.rejectRows(target, [seeded[3]!, seeded[40]!]);
        const updates = seeded.map((contactId) => ({ contactId, value: value() }));
        const results = await h.processor.writeValues(target, updates);
        const rejected = results.filter((r) => r.status === 'rejected');
        assert.deepEqual(
          rejected.map((r) => r.contactId),
          [seeded[3], seeded[40]],
        );
        for (const r of rejected) assert.ok(r.status === 'rejected' && r.reason.length > 0);
        assert.equal(results.filter((r) => r.status === 'updated').length, 48);
        assert.equal(await h.valueOf(target, seeded[3]!), undefined);
        assert.equal(await h.valueOf(target, seeded[4]!), updates[4]!.value);
      });

      it('rejects invalid values and unknown contacts per row without losing the batch', async () => {
        const target = await h.connectWithApiKey();
        await h.processor.maintain(target);
        const seeded = await h.seed(target, 20);
        const updates: ContactUpdate[] = seeded.map((contactId) => ({ contactId, value: value() }));
        updates[2] = { contactId: seeded[2]!, value: 'has spaces <script>' };
        updates.push({ contactId: 'ct_9999999', value: value() });
        const results = await h.processor.writeValues(target, updates);
        const byId = new Map(results.map((r) => [r.contactId, r]));
        assert.equal(byId.get(seeded[2]!)!.status, 'rejected');
        assert.equal(byId.get('ct_9999999')!.status, 'rejected');
        assert.equal(results.filter((r) => r.status === 'updated').length, 19);
      });
    });

    describe('rate limits', () => {
      it('turns a 429 into RateLimitedError carrying the announced delay', async () => {
        const target = await h.connectWithApiKey();
        const { retryAfterMs, toleranceMs = 0 } = await h.rateLimit(target, true);
        try {
          await assert.rejects(h.processor.listPage(target, undefined, 'full'), (err: unknown) => {
            assert.ok(err instanceof RateLimitedError, String(err));
            assert.ok(
              err.retryAfterMs <= retryAfterMs && err.retryAfterMs >= retryAfterMs - toleranceMs,
              `waits ${err.retryAfterMs} ms; announced ${retryAfterMs} ms (less up to ${toleranceMs} ms)`,
            );
            assert.equal(err.retryable, true);
            return true;
          });
        } finally {
          await h.rateLimit(target, false);
        }
      });
    });

    if (!options.refreshTokens) return;
    describe('OAuth tokens', function () {
      before(function () {
        assert.ok(h.connectWithOAuth, `${name}: the harness must connect with OAuth to test token refresh`);
      });

      const stored = async (target: ProcessorTarget) =>
        JSON.parse(await h.secrets.get(target.credentialsSecretId)) as Credentials & { kind: 'oauth2' };

      it('refreshes an expired access token on 401, and saves the refresh token the ESP returns', async () => {
        const target = await h.connectWithOAuth!();
        const before = await stored(target);
        await h.expireAccessTokens!(target);
        await h.processor.listPage(target, undefined, 'full');
        const after = await stored(target);
        assert.notEqual(after.accessToken, before.accessToken);
        if (h.rotatesRefreshTokens === false) assert.equal(after.refreshToken, before.refreshToken);
        else assert.notEqual(after.refreshToken, before.refreshToken);
        // The saved tokens work: a second call needs no new grant.
        const grants = h.tokenGrants!();
        await h.processor.listPage(target, undefined, 'full');
        assert.equal(h.tokenGrants!(), grants);
      });

      it('refreshes once for many concurrent callers', async () => {
        const target = await h.connectWithOAuth!();
        await h.processor.maintain(target);
        await h.expireAccessTokens!(target);
        const grantsBefore = h.tokenGrants!();
        await Promise.all(Array.from({ length: 10 }, () => h.processor.listPage(target, undefined, 'full')));
        assert.equal(h.tokenGrants!() - grantsBefore, 1);
      });

      it('refreshes proactively when the token expires within the margin', async () => {
        const target = await h.connectWithOAuth!();
        const creds = await stored(target);
        await h.secrets.put(
          target.credentialsSecretId,
          JSON.stringify({ ...creds, issuedAt: Date.now() - 3_600_000, expiresAt: Date.now() + 1_000 }),
        );
        const report = await h.processor.maintain(target);
        assert.equal(report.credentials, 'refreshed');
        assert.ok((await stored(target)).expiresAt! > Date.now() + 60_000);
      });

      it('turns invalid_grant into InvalidCredentialsError without leaking tokens', async () => {
        const target = await h.connectWithOAuth!();
        const creds = await stored(target);
        await h.revokeGrants!(target);
        await assert.rejects(h.processor.maintain(target), (err: unknown) => {
          assert.ok(err instanceof InvalidCredentialsError, String(err));
          assert.ok(!err.message.includes(creds.accessToken) && !err.message.includes(creds.refreshToken!));
          return true;
        });
      });
    });
  });
}
