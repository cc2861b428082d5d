// HubSpot (CRM v3). The field is a contact property; contacts needing a value come from the CRM
// search API, values are written with the contacts batch update. See docs/esps/hubspot.md.
import { z } from 'zod';
import { BaseProcessor } from './base-processor';
import type { EspCall, ListingArgs, ProcessorDeps, UpdateArgs } from './base-processor';
import { MAX_RETRY_AFTER_MS, RequestRejectedError, sanitize } from './errors';
import { expectShape } from './kit/shape';
import { heldValue, listedContact, redactContactIds } from './kit/values';
import type * as P from './types';

export interface HubSpotOptions {
  /** The public app's credentials; without them HubSpot connects with a private app token only. */
  oauth?: { clientId: string; clientSecret: string };
  /** API host (default https://api.hubapi.com); the token endpoint lives there too. */
  apiBaseUrl?: string;
  /** Where the consent page lives (default https://app.hubspot.com). */
  authBaseUrl?: string;
  /** Least time between two searches of one account (HubSpot allows 5 searches a second). */
  searchIntervalMs?: number;
}

/** Search pages are capped at 200 results. */
const SEARCH_PAGE = 200;

const accountDetails = z.object({
  portalId: z.union([z.number(), z.string()]),
  uiDomain: z.unknown().optional(),
});
const searchAnswer = z.object({
  results: z.array(
    z.object({ id: z.string().regex(/^\d+$/), properties: z.record(z.string(), z.unknown()).nullable() }),
  ),
  paging: z.object({ next: z.unknown().optional() }).partial().nullish(),
});
const batchAnswer = z.object({ results: z.array(z.unknown()), errors: z.unknown().optional() });

interface HubSpotError {
  category?: string;
  message?: string;
  context?: { ids?: unknown };
  policyName?: string;
}

export class HubSpotProcessor extends BaseProcessor {
  readonly descriptor: P.ProcessorDescriptor;
  private readonly api: string;

  constructor(deps: ProcessorDeps, options: HubSpotOptions = {}) {
    super(deps);
    this.api = (options.apiBaseUrl ?? 'https://api.hubapi.com').replace(/\/$/, '');
    const searchIntervalMs = options.searchIntervalMs ?? 300;
    const auth = (options.authBaseUrl ?? 'https://app.hubspot.com').replace(/\/$/, '');
    this.descriptor = {
      id: 'hubspot',
      displayName: 'HubSpot',
      ...(options.oauth
        ? {
            oauth2: {
              authorizeUrl: `${auth}/oauth/authorize`,
              tokenUrl: `${this.api}/oauth/2026-03/token`,
              scopes: [
                'oauth',
                'crm.objects.contacts.read',
                'crm.objects.contacts.write',
                'crm.schemas.contacts.write',
              ],
              pkce: false,
              clientId: options.oauth.clientId,
              clientSecret: options.oauth.clientSecret,
              refreshMarginMs: 5 * 60_000,
            },
          }
        : {}),
      apiKey: { label: 'Service key or private app access token' },
      // Batch endpoints take at most 100 inputs.
      maxBatchSize: 100,
      concurrency: 4,
      // HubSpot: 100 requests per 10 s per app and account (110 for public apps, 190 on Professional).
      rateLimit: { requests: 9, perMs: 1_000 },
      // Search endpoints have a limit of their own per account (HubSpot allows 5 a second).
      limits: { search: { requests: 1, perMs: searchIntervalMs, for: 'listing' } },
      mergeTag: (field) => `{{ contact.${field} }}`,
      field: { maxLength: 50, case: 'lower', allowed: /[a-z0-9_]/ },
    };
  }

  protected baseUrl(target?: Pick<P.ProcessorTarget, 'apiBaseUrl'>): string {
    return target?.apiBaseUrl ?? this.api;
  }

  protected async validateCredentials(call: EspCall): Promise<P.AccountInfo> {
    const { body } = await hubspot(call)({ method: 'GET', url: '/account-info/v3/details' });
    const { portalId, uiDomain } = expectShape(accountDetails, body, 'HubSpot', 'the account details');
    const domain = typeof uiDomain === 'string' ? ` (${uiDomain})` : '';
    return { accountId: String(portalId), accountLabel: `HubSpot account ${portalId}${domain}`, lists: [] };
  }

  protected async ensureField(call: EspCall, target: P.ProcessorTarget): Promise<'exists' | 'created'> {
    const send = hubspot(call);
    const name = encodeURIComponent(target.fieldName);
    try {
      await send({ method: 'GET', url: `/crm/v3/properties/contacts/${name}` });
      return 'exists';
    } catch (err) {
      if (!(err instanceof RequestRejectedError && err.status === 404)) throw err;
    }
    await send({
      method: 'POST',
      url: '/crm/v3/properties/contacts',
      json: {
        name: target.fieldName,
        label: 'LiveConnect ID',
        description: 'Random stable subscriber ID written by espresso. Do not edit.',
        groupName: 'contactinformation',
        type: 'string',
        fieldType: 'text',
      },
    });
    return 'created';
  }

  protected async fetchContactPage(...[call, target, cursor, mode]: ListingArgs): Promise<P.ContactPage> {
    if (cursor !== undefined && !/^\d+$/.test(cursor))
      throw new RequestRejectedError('invalid HubSpot cursor');
    // Keyset paging on the record id: every page starts at offset 0, so the 10,000-result cap of
    // `after` paging never applies, and contacts created meanwhile append at the end.
    const filters: Array<Record<string, string>> = [
      { propertyName: 'hs_object_id', operator: 'GT', value: cursor ?? '0' },
    ];
    if (mode === 'incremental')
      filters.push({ propertyName: target.fieldName, operator: 'NOT_HAS_PROPERTY' });
    const { body } = await hubspot(
      call,
      'search',
    )({
      method: 'POST',
      url: '/crm/v3/objects/contacts/search',
      json: {
        filterGroups: [{ filters }],
        sorts: [{ propertyName: 'hs_object_id', direction: 'ASCENDING' }],
        properties: [target.fieldName],
        limit: SEARCH_PAGE,
        after: '0',
      },
    });
    const found = expectShape(searchAnswer, body, 'HubSpot', 'the search');
    // The search filtered by mode already; any value a contact holds is its value (kept, never
    // replaced), whatever its form.
    const contacts = found.results.map((c) =>
      listedContact(c.id, heldValue(c.properties?.[target.fieldName]), 'full')!,
    );
    const last = found.results[found.results.length - 1];
    return { contacts, nextCursor: found.paging?.next && last ? last.id : undefined };
  }

  protected async sendBatch(...[call, target, batch]: UpdateArgs): Promise<P.ContactResult[]> {
    const results: P.ContactResult[] = [];
    let pending = batch;
    // A batch naming a contact that no longer exists is refused whole: those rows are rejected (never
    // re-created: this is an update, not an upsert) and the rest sent again.
    while (pending.length > 0) {
      let errorBody: HubSpotError | undefined;
      let answer: unknown;
      try {
        ({ body: answer } = await hubspot(call)(
          {
            method: 'POST',
            url: '/crm/v3/objects/contacts/batch/update',
            json: {
              inputs: pending.map((u) => ({ id: u.contactId, properties: { [target.fieldName]: u.value } })),
            },
          },
          {
            rowsFromError: (b) => {
              errorBody = b as HubSpotError;
              return undefined;
            },
          },
        ));
      } catch (err) {
        const missing = new Set(idsOf(errorBody));
        if (!(err instanceof RequestRejectedError) || errorBody?.category !== 'OBJECT_NOT_FOUND') throw err;
        const gone = pending.filter((u) => missing.has(u.contactId));
        if (gone.length === 0) throw err;
        for (const u of gone) results.push(rejected(u.contactId, errorBody));
        pending = pending.filter((u) => !missing.has(u.contactId));
        continue;
      }
      const body = expectShape(batchAnswer, answer, 'HubSpot', 'the batch update');
      const wanted = new Set(pending.map((u) => u.contactId));
      for (const r of body.results) {
        const id = (r as { id?: unknown } | null)?.id;
        if (typeof id === 'string' && wanted.delete(id)) results.push({ contactId: id, status: 'updated' });
      }
      for (const e of Array.isArray(body.errors) ? (body.errors as HubSpotError[]) : []) {
        for (const id of idsOf(e)) if (wanted.delete(id)) results.push(rejected(id, e));
      }
      // HubSpot answers for a merged contact under the surviving record's id: the row's own id is
      // not echoed. Rewriting would not tell us more, so the row is reported, not retried forever.
      for (const id of wanted) {
        results.push({
          contactId: id,
          status: 'rejected',
          reason: 'HubSpot returned no result for this contact (merged into another record, or deleted)',
        });
      }
      break;
    }
    return results;
  }
}

/**
 * HubSpot's 429 carries no Retry-After: the body names the policy that was hit. The delay is the
 * policy's window (a second, ten seconds; the daily limit waits the longest delay espresso allows).
 */
function hubspot(call: EspCall, limit?: string): EspCall {
  return (request, options) => call(request, { ...options, limit, retryAfterFromBody: policyDelay });
}

function policyDelay(body: unknown): number | undefined {
  const policy = String((body as HubSpotError | undefined)?.policyName ?? '').toUpperCase();
  if (policy === 'SECONDLY') return 1_000;
  if (policy === 'TEN_SECONDLY_ROLLING') return 10_000;
  if (policy === 'DAILY') return MAX_RETRY_AFTER_MS;
  return undefined;
}

function idsOf(error: HubSpotError | undefined): string[] {
  const ids = error?.context?.ids;
  return Array.isArray(ids) ? ids.filter((id): id is string => typeof id === 'string') : [];
}

/** A per-row reason without the contact's id (reasons end up in results files and summaries). */
function rejected(contactId: string, error: HubSpotError | undefined): P.ContactResult {
  // Emails first: an id inside an address would otherwise hide the address from `sanitize`.
  const message = redactContactIds(sanitize(String(error?.message ?? 'rejected')), [
    contactId,
    ...idsOf(error),
  ]);
  return { contactId, status: 'rejected', reason: `${error?.category ?? 'ERROR'}: ${message}` };
}
