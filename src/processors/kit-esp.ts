// Kit (formerly ConvertKit), API v4: the ESP named Kit, not the processors kit in ./kit/. The field
// is an account custom field; subscribers belong to the account (no lists). With OAuth, values go
// through the bulk custom-field-values endpoint (100 rows answered at once, per-row failures);
// with an API key, which the bulk endpoints refuse, one Update Subscriber per subscriber.
// See docs/esps/kit.md for the vendor facts and where espresso differs.
import { z } from 'zod';
import { BaseProcessor } from './base-processor';
import type { EspCall, ListingArgs, ProcessorDeps, UpdateArgs } from './base-processor';
import { RequestRejectedError, TransientError } from './errors';
import type { EspRequest } from './http';
import { expectShape } from './kit/shape';
import { heldValue, listedContact, redactContactIds } from './kit/values';
import type * as P from './types';

export interface KitOptions {
  /** Registered app; without it publishers connect with a V4 API key only. */
  oauth?: { clientId: string; clientSecret: string };
  /** API host (default https://api.kit.com); the OAuth endpoints live there too. */
  apiBaseUrl?: string;
}

/** Kit's 429 is the plain text "Retry later" with no delay: a wait of up to 60 s resets the window. */
export const KIT_RETRY_AFTER_MS = 60_000;
/** The bulk endpoints answer at once (200) up to 100 rows; more are queued (202) for a callback. */
export const KIT_SYNC_BULK_ROWS = 100;
/** Subscribers per listing request (Kit's maximum `per_page`). */
const PAGE = 1000;
// Kit ids are integers; 15 digits stay exact as a JSON number.
const SUBSCRIBER_ID = /^[1-9][0-9]{0,14}$/;

const account = z.object({
  account: z.object({ id: z.union([z.number(), z.string()]), name: z.string().nullish() }),
});
const pagination = z.object({ has_next_page: z.boolean(), end_cursor: z.string().nullish() });
const customField = z.object({ id: z.number().int(), key: z.string(), label: z.string().nullish() });
const customFields = z.object({ custom_fields: z.array(customField), pagination });
const created = z.object({ custom_field: customField });
const subscriber = z.object({ id: z.number().int(), fields: z.record(z.string(), z.unknown()).nullish() });
const subscribers = z.object({ subscribers: z.array(subscriber), pagination });
const updatedSubscriber = z.object({ subscriber });
const fieldValue = z.object({ subscriber_id: z.number().nullish(), value: z.unknown().optional() });
const bulkAnswer = z.object({
  custom_field_values: z.array(fieldValue),
  failures: z.array(z.object({ errors: z.array(z.unknown()), custom_field_value: fieldValue })).nullish(),
});

export class KitProcessor extends BaseProcessor {
  readonly descriptor: P.ProcessorDescriptor;
  private readonly api: string;

  constructor(deps: ProcessorDeps, options: KitOptions = {}) {
    super(deps);
    this.api = (options.apiBaseUrl ?? 'https://api.kit.com').replace(/\/$/, '');
    this.descriptor = {
      id: 'kit',
      displayName: 'Kit',
      ...(options.oauth && {
        oauth2: {
          authorizeUrl: `${this.api}/v4/oauth/authorize`,
          tokenUrl: `${this.api}/v4/oauth/token`,
          scopes: [], // Kit's default scope, `public`, is the only one it offers.
          pkce: false, // a web server app with a client secret (Kit's refresh token flow)
          clientId: options.oauth.clientId,
          clientSecret: options.oauth.clientSecret,
          refreshMarginMs: 5 * 60_000,
        },
      }),
      apiKey: { label: 'Kit V4 API key' },
      maxBatchSize: KIT_SYNC_BULK_ROWS,
      // Kit documents no limit on requests in flight.
      concurrency: 4,
      // 600 requests in 60 s per OAuth access token; an API key has 120 (the `apiKey` limit, named
      // by every request sent with one).
      rateLimit: { requests: 600, perMs: 60_000 },
      limits: { apiKey: { requests: 120, perMs: 60_000 } },
      mergeTag: (field) => `{{ subscriber.${field} }}`,
      // Kit derives a field's key from its label: ASCII, lowercase, underscores.
      field: { maxLength: 50, case: 'lower', allowed: /[a-z0-9_]/ },
    };
  }

  protected baseUrl(target?: Pick<P.ProcessorTarget, 'apiBaseUrl'>): string {
    return target?.apiBaseUrl ?? this.api;
  }

  protected override authHeaders(credentials: P.Credentials): Record<string, string> {
    return credentials.kind === 'apiKey'
      ? { 'x-kit-api-key': credentials.apiKey }
      : { authorization: `Bearer ${credentials.accessToken}` };
  }

  protected async validateCredentials(call: EspCall, credentials: P.Credentials): Promise<P.AccountInfo> {
    const { body } = await kit(call, credentials.kind)({ method: 'GET', url: '/v4/account' });
    const { id, name } = expectShape(account, body, 'Kit', 'GET /v4/account').account;
    // The account's name only: the answer also carries the owner's email, which stays out of labels.
    return { accountId: String(id), accountLabel: name || `Kit account ${id}`, lists: [] };
  }

  protected async ensureField(call: EspCall, target: P.ProcessorTarget): Promise<'exists' | 'created'> {
    const send = kit(call, await this.kindOf(target));
    if (await findField(send, target.fieldName)) return 'exists';
    // The label is the key itself, so the key Kit derives from it is the field name.
    const create = { method: 'POST', url: '/v4/custom_fields', json: { label: target.fieldName } } as const;
    const { status, body } = await send(create);
    const field = expectShape(created, body, 'Kit', 'POST /v4/custom_fields').custom_field;
    if (field.key !== target.fieldName) {
      throw new RequestRejectedError(
        `Kit created the field with the key ${JSON.stringify(field.key)}, not ${JSON.stringify(target.fieldName)}`,
      );
    }
    // 200: the field already existed (created by a concurrent run since the read).
    return status === 200 ? 'exists' : 'created';
  }

  /**
   * List Subscribers, active ones, oldest id first, 1,000 a page: Kit's filter endpoint shows no
   * "custom field is empty" condition, so both modes read every page and filter here.
   */
  protected async fetchContactPage(...[call, target, cursor, mode]: ListingArgs): Promise<P.ContactPage> {
    const send = kit(call, await this.kindOf(target));
    const { body } = await send({
      method: 'GET',
      url: '/v4/subscribers',
      query: { per_page: PAGE, sort_field: 'id', sort_order: 'asc', status: 'active', after: cursor },
    });
    const page = expectShape(subscribers, body, 'Kit', 'GET /v4/subscribers');
    const contacts = page.subscribers.flatMap(
      (s) => listedContact(String(s.id), heldValue(s.fields?.[target.fieldName]), mode) ?? [],
    );
    if (!page.pagination.has_next_page) return { contacts };
    const nextCursor = page.pagination.end_cursor;
    if (nextCursor) return { contacts, nextCursor };
    throw new TransientError('Kit answered GET /v4/subscribers with a next page but no cursor');
  }

  protected async sendBatch(...[call, target, batch]: UpdateArgs): Promise<P.ContactResult[]> {
    const results: P.ContactResult[] = [];
    const rows = batch.filter((u) => {
      if (SUBSCRIBER_ID.test(u.contactId)) return true;
      results.push({ contactId: u.contactId, status: 'rejected', reason: 'not a Kit subscriber id' });
      return false;
    });
    if (rows.length === 0) return results;
    const kind = await this.kindOf(target);
    const send = kit(call, kind);
    if (kind !== 'oauth2') return [...results, ...(await putEach(send, target, rows))];
    // One look-up of the field per write (its batches share `call`), not one per batch: at 600
    // requests a minute, a look-up per 100 rows would halve what is left for the rows.
    let field = fieldLookups.get(call);
    if (!field) {
      field = findField(send, target.fieldName);
      fieldLookups.set(call, field);
    }
    return [...results, ...(await bulkWrite(send, await field, rows))];
  }

  private async kindOf(target: P.ProcessorTarget): Promise<P.Credentials['kind']> {
    return (await this.credentials(target)).credentials.kind;
  }
}

type Send = (request: EspRequest) => ReturnType<EspCall>;

/** The field's look-up of each write in progress (a write's batches share its EspCall). */
const fieldLookups = new WeakMap<EspCall, Promise<z.output<typeof customField> | undefined>>();

/** Requests with Kit's 429 delay, counted against the API key's own limit when sent with one. */
function kit(call: EspCall, kind: P.Credentials['kind']): Send {
  const options = { retryAfterFromBody: () => KIT_RETRY_AFTER_MS };
  return (request) => call(request, kind === 'apiKey' ? { ...options, limit: 'apiKey' } : options);
}

async function findField(send: Send, key: string): Promise<z.output<typeof customField> | undefined> {
  let after: string | undefined;
  for (let pages = 0; pages < 100; pages++) {
    const { body } = await send({
      method: 'GET',
      url: '/v4/custom_fields',
      query: { per_page: PAGE, after },
    });
    const page = expectShape(customFields, body, 'Kit', 'GET /v4/custom_fields');
    const found = page.custom_fields.find((f) => f.key === key);
    if (found) return found;
    if (!page.pagination.has_next_page || !page.pagination.end_cursor) return undefined;
    after = page.pagination.end_cursor;
  }
  throw new TransientError('Kit answered GET /v4/custom_fields with more than 100 pages');
}

/**
 * Bulk update subscriber custom field values, at most 100 rows (answered at once). Failures are
 * matched to rows by value (unique per row): Kit answers a missing subscriber with a null id.
 */
async function bulkWrite(
  send: Send,
  field: z.output<typeof customField> | undefined,
  rows: P.ContactUpdate[],
) {
  // Retried: the next maintenance re-creates a field deleted since this run's.
  if (!field) throw new TransientError('the Kit custom field is missing (deleted since maintenance?)');
  const { status, body } = await send({
    method: 'POST',
    url: '/v4/bulk/custom_fields/subscribers',
    json: {
      custom_field_values: rows.map((u) => ({
        subscriber_id: Number(u.contactId),
        subscriber_custom_field_id: field.id,
        value: u.value,
      })),
      callback_url: null,
    },
  });
  if (status !== 200)
    throw new TransientError(`Kit answered the bulk update with ${status}, not its outcome`);
  const answer = expectShape(bulkAnswer, body, 'Kit', 'POST /v4/bulk/custom_fields/subscribers');
  const written = new Set(answer.custom_field_values.map((v) => `${v.subscriber_id}:${String(v.value)}`));
  const failed = new Map(
    (answer.failures ?? []).map((f) => [String(f.custom_field_value.value), f.errors.map(String).join('; ')]),
  );
  return rows.map((u): P.ContactResult => {
    const reason = failed.get(u.value);
    if (reason !== undefined)
      return { contactId: u.contactId, status: 'rejected', reason: reason || 'refused' };
    if (written.has(`${u.contactId}:${u.value}`)) return { contactId: u.contactId, status: 'updated' };
    return {
      contactId: u.contactId,
      status: 'rejected',
      reason: 'Kit reported no outcome for this subscriber',
    };
  });
}

/**
 * Update Subscriber, one request per subscriber. Kit ignores fields that do not exist without an
 * error, so the answer must show the value: otherwise the field went missing and the batch is retried.
 */
function putEach(send: Send, target: P.ProcessorTarget, rows: P.ContactUpdate[]) {
  return Promise.all(
    rows.map(async ({ contactId, value }): Promise<P.ContactResult> => {
      try {
        const { body } = await send({
          method: 'PUT',
          url: `/v4/subscribers/${contactId}`,
          json: { fields: { [target.fieldName]: value } },
        });
        const held = expectShape(updatedSubscriber, body, 'Kit', 'PUT /v4/subscribers').subscriber.fields;
        if (held?.[target.fieldName] !== value) {
          throw new TransientError('Kit did not keep the value: the custom field is missing (deleted?)');
        }
        return { contactId, status: 'updated' };
      } catch (err) {
        // 429s, 5xx and refused keys concern every subscriber: the batch is retried (same values).
        if (!(err instanceof RequestRejectedError)) throw err;
        const reason =
          err.status === 404
            ? 'no such subscriber (deleted since the listing)'
            : redactContactIds(err.message, [contactId]);
        return { contactId, status: 'rejected', reason };
      }
    }),
  );
}
