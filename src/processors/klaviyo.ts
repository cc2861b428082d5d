// Klaviyo: private API key, JSON:API, profile custom property written by Update Profile, which
// never creates a profile. See docs/esps/klaviyo.md for the vendor facts and where espresso differs.
import { z } from 'zod';
import { BaseProcessor } from './base-processor';
import type { EspCall, ListingArgs, ProcessorDeps, UpdateArgs } from './base-processor';
import { RequestRejectedError, TransientError } from './errors';
import { expectShape } from './kit/shape';
import { heldValue, listedContact, redactContactIds } from './kit/values';
import type * as P from './types';

export interface KlaviyoOptions {
  /** Default https://a.klaviyo.com (Klaviyo has one API host for every account). */
  apiBaseUrl?: string;
}

/** The API revision espresso is written against (a GA revision; sent on every request). */
export const KLAVIYO_REVISION = '2026-07-15';
/** The profile that carries espresso's declared properties (no email or phone: never messaged). */
export const KLAVIYO_MARKER_EXTERNAL_ID = 'espresso-field-marker';
// Not a valid espresso value (spaces), so it can never pass for a subscriber's ID.
const MARKER_VALUE = 'declared by espresso';
const JSON_API = 'application/vnd.api+json';
const PAGE_SIZE = 100;

const accounts = z.object({
  data: z
    .array(
      z.object({
        id: z.string().min(1),
        attributes: z
          .object({
            contact_information: z.object({ organization_name: z.string().nullish() }).nullish(),
          })
          .nullish(),
      }),
    )
    .min(1),
});
const profile = z.object({
  id: z.string().min(1),
  attributes: z
    .object({
      external_id: z.string().nullish(),
      properties: z.record(z.string(), z.unknown()).nullish(),
    })
    .nullish(),
});
const profiles = z.object({
  data: z.array(profile),
  links: z.object({ next: z.string().nullish() }).nullish(),
});
const updated = z.object({ data: z.object({ id: z.string() }) });

export class KlaviyoProcessor extends BaseProcessor {
  readonly descriptor: P.ProcessorDescriptor = {
    id: 'klaviyo',
    displayName: 'Klaviyo',
    apiKey: { label: 'Klaviyo private API key' },
    // One Update Profile request per profile: a batch is only the profiles retried together when a
    // request fails for a reason that is not the profile's.
    maxBatchSize: 100,
    concurrency: 4,
    // Get Profiles and Update Profile: 75/s burst, 750/min steady each. espresso: 10/s (600/min),
    // leaving room for the publisher's other private-key integrations, which share the quota.
    rateLimit: { requests: 10, perMs: 1000 },
    // Get Accounts has a limit of its own, 1/s burst (15/min steady: espresso calls it once per
    // connect and per daily maintenance, but a connect and the first run's maintenance follow
    // each other within a second).
    limits: { accounts: { requests: 1, perMs: 1_000 } },
    mergeTag: (field) => `{{ person|lookup:'${field}' }}`,
    // Klaviyo accepts almost any property name; espresso keeps to names every template syntax reads.
    field: { maxLength: 64, case: 'preserve', allowed: /[A-Za-z0-9_]/ },
  };

  constructor(
    deps: ProcessorDeps,
    private readonly options: KlaviyoOptions = {},
  ) {
    super(deps);
  }

  protected baseUrl(target?: Pick<P.ProcessorTarget, 'apiBaseUrl'>): string {
    return target?.apiBaseUrl ?? this.options.apiBaseUrl ?? 'https://a.klaviyo.com';
  }

  protected override authHeaders(credentials: P.Credentials): Record<string, string> {
    const key = credentials.kind === 'apiKey' ? credentials.apiKey : credentials.accessToken;
    return { authorization: `Klaviyo-API-Key ${key}`, revision: KLAVIYO_REVISION, accept: JSON_API };
  }

  /** GET /api/accounts (1/s, 15/min): once per connection and per daily maintenance. */
  protected async validateCredentials(call: EspCall): Promise<P.AccountInfo> {
    const { body } = await call(
      {
        method: 'GET',
        url: '/api/accounts',
        query: { 'fields[account]': 'contact_information.organization_name' },
      },
      { limit: 'accounts' },
    );
    const account = expectShape(accounts, body, 'Klaviyo', 'GET /api/accounts').data[0]!;
    const name = account.attributes?.contact_information?.organization_name;
    return { accountId: account.id, accountLabel: name || `Klaviyo account ${account.id}`, lists: [] };
  }

  /**
   * Klaviyo has no property definitions: a property exists while some profile carries it. espresso
   * declares the field on one marker profile (external_id only), so 'exists' means the marker has it.
   */
  protected async ensureField(call: EspCall, target: P.ProcessorTarget): Promise<'exists' | 'created'> {
    const field = target.fieldName;
    const { body } = await call({
      method: 'GET',
      url: '/api/profiles',
      query: {
        filter: `equals(external_id,"${KLAVIYO_MARKER_EXTERNAL_ID}")`,
        'fields[profile]': 'external_id,properties',
        'page[size]': 1,
      },
    });
    const marker = expectShape(profiles, body, 'Klaviyo', 'GET /api/profiles').data[0];
    if (marker?.attributes?.properties?.[field] != null) return 'exists';
    const properties = { [field]: MARKER_VALUE };
    if (marker) {
      await call({
        method: 'PATCH',
        url: `/api/profiles/${encodeURIComponent(marker.id)}`,
        headers: { 'content-type': JSON_API },
        json: { data: { type: 'profile', id: marker.id, attributes: { properties } } },
      });
      return 'created';
    }
    // Another run creating the marker between our read and write answers 409 (the base: 'exists').
    await call({
      method: 'POST',
      url: '/api/profiles',
      headers: { 'content-type': JSON_API },
      json: {
        data: { type: 'profile', attributes: { external_id: KLAVIYO_MARKER_EXTERNAL_ID, properties } },
      },
    });
    return 'created';
  }

  /** Get Profiles pages (100, cursor); custom properties cannot be filtered on, so we filter here. */
  protected async fetchContactPage(...[call, target, cursor, mode]: ListingArgs): Promise<P.ContactPage> {
    const { body } = await call({
      method: 'GET',
      url: '/api/profiles',
      query: { 'fields[profile]': 'external_id,properties', 'page[size]': PAGE_SIZE, 'page[cursor]': cursor },
    });
    const page = expectShape(profiles, body, 'Klaviyo', 'GET /api/profiles');
    const contacts = page.data.flatMap((p) => {
      if (p.attributes?.external_id === KLAVIYO_MARKER_EXTERNAL_ID) return [];
      // Any value a profile holds is its value (kept, never replaced), whatever its form.
      return listedContact(p.id, heldValue(p.attributes?.properties?.[target.fieldName]), mode) ?? [];
    });
    const next = page.links?.next;
    if (!next) return { contacts };
    // Keep only Klaviyo's opaque cursor (an id position, never an email: we do not sort by email).
    const nextCursor = new URL(next, this.baseUrl(target)).searchParams.get('page[cursor]');
    if (!nextCursor)
      throw new TransientError('Klaviyo answered GET /api/profiles with a next link without a cursor');
    return { contacts, nextCursor };
  }

  /**
   * Update Profile (PATCH /api/profiles/{id}) for each profile: it updates the profile with that id
   * and never creates one, so a profile deleted since the listing is refused (404) and stays
   * deleted. Klaviyo's bulk import writes up to 10,000 profiles per request, but it is an upsert: a
   * row that matches no profile creates one, which publishers pay for.
   */
  protected async sendBatch(...[call, target, batch]: UpdateArgs): Promise<P.ContactResult[]> {
    return Promise.all(
      batch.map(async ({ contactId, value }): Promise<P.ContactResult> => {
        try {
          const { body } = await call({
            method: 'PATCH',
            url: `/api/profiles/${encodeURIComponent(contactId)}`,
            headers: { 'content-type': JSON_API },
            json: {
              data: {
                type: 'profile',
                id: contactId,
                attributes: { properties: { [target.fieldName]: value } },
              },
            },
          });
          if (expectShape(updated, body, 'Klaviyo', 'PATCH /api/profiles').data.id !== contactId) {
            throw new TransientError('Klaviyo answered PATCH /api/profiles for another profile');
          }
          return { contactId, status: 'updated' };
        } catch (err) {
          // 429s, 5xx and refused keys concern every profile: the batch is retried (same values).
          if (!(err instanceof RequestRejectedError)) throw err;
          const reason =
            err.status === 404
              ? 'no such profile (deleted since the listing): not re-created'
              : redactContactIds(err.message, [contactId]);
          return { contactId, status: 'rejected', reason };
        }
      }),
    );
  }
}
