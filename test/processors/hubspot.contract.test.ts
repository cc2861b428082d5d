import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { RateLimitedError, TransientError } from '../../src/processors/errors';
import { HubSpotProcessor } from '../../src/processors/hubspot';
import type { ProcessorTarget } from '../../src/processors/types';
import { LocalSecretStore } from '../../src/storage/local-secret-store';
import { tempDir } from '../support/tmp';
import type { FakeHubSpot } from '../fakes/hubspot-server';
import { processorContract } from './contract';
import { hubspotHarness } from './hubspot-harness';

/** Every fake this file starts: their recorded requests are checked against HubSpot's specs. */
const fakes: FakeHubSpot[] = [];
const harness = async () => {
  const h = await hubspotHarness();
  fakes.push(h.fake);
  return h;
};

processorContract('HubSpot', harness);

const value = () => randomBytes(16).toString('base64url');

/** The operations of HubSpot's published specs that espresso uses. */
const DOCUMENTED = [
  /^GET \/account-info\/v3\/details$/,
  /^GET \/crm\/v3\/properties\/contacts\/[a-z][a-z0-9_]*$/,
  /^POST \/crm\/v3\/properties\/contacts$/,
  /^POST \/crm\/v3\/objects\/contacts\/search$/,
  /^POST \/crm\/v3\/objects\/contacts\/batch\/update$/,
  /^GET \/oauth\/authorize\?/,
  /^POST \/oauth\/2026-03\/token$/,
];

describe('HubSpot processor', function () {
  this.timeout(120_000);
  let h: Awaited<ReturnType<typeof hubspotHarness>>;
  let target: ProcessorTarget;
  before(async () => {
    h = await harness();
  });
  beforeEach(async () => {
    target = await h.connectWithApiKey();
    await h.processor.maintain(target);
  });
  after(() => h.stop());

  it('declares HubSpot merge tag, field naming, batch size and limits', () => {
    const d = h.processor.descriptor;
    assert.equal(d.mergeTag('lcee'), '{{ contact.lcee }}');
    assert.equal(h.processor.fieldName('LCEE-id'), 'lceeid');
    assert.equal(d.maxBatchSize, 100);
    assert.ok(d.rateLimit.requests / d.rateLimit.perMs < 100 / 10_000, 'under 100 requests per 10 s');
    assert.equal(d.apiKey?.label, 'Service key or private app access token');
  });

  it('offers OAuth only when client credentials are configured, with HubSpot URLs and scopes', async () => {
    const secrets = new LocalSecretStore(`${await tempDir()}/s`, { keyFile: `${await tempDir()}/k` });
    assert.equal(new HubSpotProcessor({ secrets }).descriptor.oauth2, undefined);
    const oauth = new HubSpotProcessor({ secrets }, { oauth: { clientId: 'id', clientSecret: 'secret' } })
      .descriptor.oauth2!;
    assert.equal(oauth.authorizeUrl, 'https://app.hubspot.com/oauth/authorize');
    assert.equal(oauth.tokenUrl, 'https://api.hubapi.com/oauth/2026-03/token');
    assert.deepEqual(oauth.scopes, [
      'oauth',
      'crm.objects.contacts.read',
      'crm.objects.contacts.write',
      'crm.schemas.contacts.write',
    ]);
  });

  it('creates the property as a text field in contact information', () => {
    const p = h.portalOf(target).properties.get('lcee')!;
    assert.equal(p.type, 'string');
    assert.equal(p.fieldType, 'text');
    assert.equal(p.groupName, 'contactinformation');
  });

  it('treats a property created by a concurrent run as existing', async () => {
    await h.deleteField(target);
    const fields = (await Promise.all([h.processor.maintain(target), h.processor.maintain(target)])).map(
      (r) => r.field,
    );
    assert.deepEqual(fields.sort(), ['created', 'exists']);
  });

  it('pages past the 10,000-result search cap, each contact once, in id order', async () => {
    const seeded = await h.seed(target, 10_450);
    const listed: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await h.processor.listPage(target, cursor, 'full');
      assert.ok(page.contacts.length <= 200);
      listed.push(...page.contacts.map((c) => c.contactId));
      cursor = page.nextCursor;
      if (cursor) assert.match(cursor, /^\d+$/);
    } while (cursor);
    assert.deepEqual(listed, seeded);
  });

  it("keeps searches under HubSpot's search rate even for concurrent callers", async () => {
    await h.seed(target, 10);
    await Promise.all(Array.from({ length: 12 }, () => h.processor.listPage(target, undefined, 'full')));
    assert.ok(!h.fake.problems.some((p) => p.includes('SECONDLY')), h.fake.problems.join());
  });

  it('reports every value a contact holds as its current value, whatever its form (it is kept)', async () => {
    const [a, b, c] = await h.seed(target, 3);
    const contacts = h.portalOf(target).contacts;
    contacts.find((x) => String(x.id) === a)!.props.set('lcee', 'legacy42');
    const good = value();
    contacts.find((x) => String(x.id) === b)!.props.set('lcee', good);
    contacts.find((x) => String(x.id) === c)!.props.set('lcee', '');
    const page = await h.processor.listPage(target, undefined, 'full');
    assert.deepEqual(page.contacts, [
      { contactId: a, currentValue: 'legacy42' },
      { contactId: b, currentValue: good },
      { contactId: c },
    ]);
  });

  it('never sends more than 100 contacts in one batch update', async () => {
    const seeded = await h.seed(target, 250);
    const results = await h.processor.writeValues(
      target,
      seeded.map((contactId) => ({ contactId, value: value() })),
    );
    assert.ok(results.every((r) => r.status === 'updated'));
    assert.ok(h.fake.largestBatch <= 100 && h.fake.largestBatch > 0, String(h.fake.largestBatch));
  });

  it('rejects a deleted contact without re-creating it, and writes the rest of the batch', async () => {
    const seeded = await h.seed(target, 30);
    const portal = h.portalOf(target);
    const gone = seeded[7]!;
    portal.contacts.splice(
      portal.contacts.findIndex((c) => String(c.id) === gone),
      1,
    );
    const results = await h.processor.writeValues(
      target,
      seeded.map((contactId) => ({ contactId, value: value() })),
    );
    const rejected = results.filter((r) => r.status === 'rejected');
    assert.deepEqual(
      rejected.map((r) => r.contactId),
      [gone],
    );
    assert.ok(rejected[0]!.status === 'rejected' && /OBJECT_NOT_FOUND/.test(rejected[0]!.reason));
    assert.ok(!rejected[0]!.reason.includes(gone), 'the reason does not name the contact');
    assert.equal(portal.contacts.length, 29);
    assert.equal(portal.contact(gone), undefined);
  });

  it('rejects a contact merged into another, which HubSpot answers under the surviving id, without sending it again', async () => {
    const seeded = await h.seed(target, 5);
    const [merged, survivor] = [seeded[1]!, seeded[4]!];
    h.portalOf(target).merge(merged, survivor);
    const before = h.fake.requests.length;
    const writes = seeded.slice(0, 4).map((contactId) => ({ contactId, value: value() }));
    const results = await h.processor.writeValues(target, writes);
    assert.deepEqual(
      results.map((r) => [r.contactId, r.status]),
      [
        [seeded[0], 'updated'],
        [merged, 'rejected'],
        [seeded[2], 'updated'],
        [seeded[3], 'updated'],
      ],
    );
    const reason = results[1]!.status === 'rejected' ? results[1]!.reason : '';
    assert.match(reason, /merged into another record/);
    assert.ok(!reason.includes(merged) && !reason.includes(survivor), reason);
    // One request: the row is reported, never sent again in a loop.
    const updates = h.fake.requests.slice(before).filter((r) => r.url.endsWith('/batch/update'));
    assert.equal(updates.length, 1);
  });

  it('keeps emails and ids out of per-row reasons', async () => {
    const seeded = await h.seed(target, 5);
    await h.rejectRows(target, [seeded[1]!]);
    const results = await h.processor.writeValues(
      target,
      seeded.map((contactId) => ({ contactId, value: value() })),
    );
    const r = results[1]!;
    assert.ok(r.status === 'rejected');
    assert.ok(!r.reason.includes('@') && !r.reason.includes(seeded[1]!), r.reason);
    assert.match(r.reason, /^VALIDATION_ERROR: /);
  });

  for (const [policy, ms] of [
    ['SECONDLY', 1_000],
    ['TEN_SECONDLY_ROLLING', 10_000],
    ['DAILY', 15 * 60_000],
  ] as const) {
    it(`waits out HubSpot's ${policy} policy when rate limited`, async () => {
      h.portalOf(target).rateLimited = policy;
      try {
        await assert.rejects(
          h.processor.writeValues(target, [{ contactId: '1', value: value() }]),
          (err: unknown) => {
            assert.ok(err instanceof RateLimitedError, String(err));
            assert.equal(err.retryAfterMs, ms);
            return true;
          },
        );
      } finally {
        h.portalOf(target).rateLimited = undefined;
      }
    });
  }

  for (const [what, body] of [
    ['an HTML page', '<html>maintenance</html>'],
    ['a search answer without results', '{"total":3}'],
    ['a JSON array', '[1,2]'],
  ] as const) {
    it(`turns ${what} in a 2xx answer into TransientError`, async () => {
      await h.seed(target, 3);
      h.fake.malformed = body;
      try {
        await assert.rejects(h.processor.listPage(target, undefined, 'full'), (err: unknown) => {
          assert.ok(err instanceof TransientError, String(err));
          return true;
        });
      } finally {
        h.fake.malformed = undefined;
      }
    });
  }

  it('turns a batch update answer without results into TransientError', async () => {
    const seeded = await h.seed(target, 2);
    h.fake.malformed = '{"status":"COMPLETE"}';
    try {
      await assert.rejects(
        h.processor.writeValues(
          target,
          seeded.map((contactId) => ({ contactId, value: value() })),
        ),
        TransientError,
      );
    } finally {
      h.fake.malformed = undefined;
    }
  });

  it('describes the account by its portal id, without lists', async () => {
    const portal = h.fake.addPortal();
    const { account } = await h.processor.connectWithApiKey(portal.privateAppToken);
    assert.equal(account.accountId, String(portal.id));
    assert.deepEqual(account.lists, []);
    assert.equal(account.apiBaseUrl, undefined);
  });
});

describe('HubSpot requests (all of this file)', () => {
  it('every request was a documented operation with a valid body, and every operation was used', () => {
    const all = fakes.flatMap((f) => f.requests);
    assert.ok(all.length > 200, `only ${all.length} requests recorded`);
    const undocumented = all.filter((r) => !DOCUMENTED.some((d) => d.test(`${r.method} ${r.url}`)));
    assert.deepEqual(
      undocumented.map((r) => `${r.method} ${r.url}`),
      [],
    );
    for (const d of DOCUMENTED) {
      assert.ok(
        all.some((r) => d.test(`${r.method} ${r.url}`)),
        `${d.source} was never exercised`,
      );
    }
    for (const r of all) {
      if (r.method === 'POST' && !r.url.startsWith('/oauth'))
        assert.equal(r.headers['content-type'], 'application/json');
      if (!r.url.startsWith('/oauth')) assert.match(String(r.headers.authorization), /^Bearer \S+$/);
    }
    assert.deepEqual(
      fakes.flatMap((f) => f.problems),
      [],
    );
  });
});
