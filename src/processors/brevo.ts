// Brevo API v3: an API key in the `api-key` header, one contact attribute (account-wide) as the
// field, contacts keyed by Brevo's numeric id and written with the batch update, which never
// creates a contact. See docs/esps/brevo.md for the vendor facts and where espresso differs.
import { z } from 'zod';
import { BaseProcessor } from './base-processor';
import type { EspCall, ListingArgs, ProcessorDeps, UpdateArgs } from './base-processor';
import { TransientError } from './errors';
import { createUnlessRaced, offsetAfter, offsetOf } from './kit/field-create';
import { expectShape } from './kit/shape';
import { heldValue, listedContact } from './kit/values';
import type * as P from './types';

export interface BrevoOptions {
  /** Default https://api.brevo.com/v3 (Brevo has one API host for every account). */
  apiBaseUrl?: string;
}

const API_URL = 'https://api.brevo.com/v3';
/** Contacts per listing request: Brevo's largest `limit` for Get all the contacts. */
const PAGE = 1000;
/** The attribute category espresso's field lives in: a plain contact attribute. */
const CATEGORY = 'normal';

const account = z
  .object({
    organization_id: z.string().min(1).optional(),
    user_id: z.number().int().optional(),
    companyName: z.string().nullish(),
  })
  .refine((a) => a.organization_id !== undefined || a.user_id !== undefined);
const attributes = z.object({
  attributes: z.array(z.object({ name: z.string(), category: z.string().optional() })),
});
const contacts = z.object({
  contacts: z.array(
    z.object({ id: z.number().int(), attributes: z.record(z.string(), z.unknown()).nullish() }),
  ),
  count: z.number().int().nonnegative().optional(),
});
const partial = z.object({
  failureIds: z.array(z.union([z.number(), z.string()])),
  successIds: z.array(z.union([z.number(), z.string()])).optional(),
});

export class BrevoProcessor extends BaseProcessor {
  readonly descriptor: P.ProcessorDescriptor = {
    id: 'brevo',
    displayName: 'Brevo',
    // Brevo's OAuth apps can only be authorized inside the app owner's own organisation: espresso
    // cannot offer publishers a consent button, so Brevo connects with an API key only.
    apiKey: { label: 'Brevo API key' },
    // Contacts per POST /contacts/batch: Brevo documents no maximum; espresso keeps to 100.
    maxBatchSize: 100,
    concurrency: 4,
    // Every endpoint under /v3/contacts: 10/s and 36,000/h per account on every plan. espresso
    // takes 8/s (about 27,000/h), leaving room for the publisher's other integrations on the key.
    rateLimit: { requests: 8, perMs: 1_000 },
    // GET /v3/account is one of "all other endpoints": 100 an hour. espresso calls it once per
    // connect and per daily maintenance, at most 90 an hour.
    limits: { account: { requests: 90, perMs: 3_600_000 } },
    mergeTag: (field) => `{{ contact.${field} }}`,
    // Brevo shows attribute names in capitals; espresso keeps to A-Z 0-9 _ and 32 characters.
    field: { maxLength: 32, case: 'upper', allowed: /[A-Z0-9_]/ },
  };

  constructor(
    deps: ProcessorDeps,
    private readonly options: BrevoOptions = {},
  ) {
    super(deps);
  }

  protected baseUrl(target?: Pick<P.ProcessorTarget, 'apiBaseUrl'>): string {
    return target?.apiBaseUrl ?? this.options.apiBaseUrl ?? API_URL;
  }

  protected override authHeaders(credentials: P.Credentials): Record<string, string> {
    const key = credentials.kind === 'apiKey' ? credentials.apiKey : credentials.accessToken;
    return { 'api-key': key, accept: 'application/json' };
  }

  /** GET /account: the organization id and company name (never the login email). */
  protected async validateCredentials(call: EspCall): Promise<P.AccountInfo> {
    const { body } = await call({ method: 'GET', url: '/account' }, { limit: 'account' });
    const a = expectShape(account, body, 'Brevo', 'GET /account');
    const id = a.organization_id ?? `user-${a.user_id}`;
    return { accountId: id, accountLabel: a.companyName || `Brevo account ${id}`, lists: [] };
  }

  /** A text attribute in the `normal` category; Brevo refuses a second one of the same name (400). */
  protected async ensureField(call: EspCall, target: P.ProcessorTarget): Promise<'exists' | 'created'> {
    const field = target.fieldName;
    const exists = async () => {
      const { body } = await call({ method: 'GET', url: '/contacts/attributes' });
      const all = expectShape(attributes, body, 'Brevo', 'GET /contacts/attributes').attributes;
      return all.some((a) => a.name.toUpperCase() === field && a.category === CATEGORY);
    };
    if (await exists()) return 'exists';
    const create = () =>
      call({
        method: 'POST',
        url: `/contacts/attributes/${CATEGORY}/${encodeURIComponent(field)}`,
        json: { type: 'text' },
      });
    return createUnlessRaced(create, exists);
  }

  /**
   * Get all the contacts, oldest first (new contacts append at the end), 1,000 a page; the cursor
   * is the offset. Brevo's `filter` takes `equals` only, which cannot say "empty or absent", so
   * both modes read every contact and filter here.
   */
  protected async fetchContactPage(...[call, target, cursor, mode]: ListingArgs): Promise<P.ContactPage> {
    const offset = offsetOf(cursor);
    const { body } = await call({
      method: 'GET',
      url: '/contacts',
      query: { limit: PAGE, offset, sort: 'asc' },
    });
    const { contacts: page, count: total } = expectShape(contacts, body, 'Brevo', 'GET /contacts');
    const found = page.flatMap(
      (c) => listedContact(String(c.id), heldValue(c.attributes?.[target.fieldName]), mode) ?? [],
    );
    return page.length < PAGE
      ? { contacts: found, total }
      : { contacts: found, nextCursor: String(offset + page.length), total };
  }

  /** Offsets: the next page is known before this one answers. */
  override pageAfter(cursor: string | undefined, _mode: P.ListMode, total?: number): string | undefined {
    return offsetAfter(cursor, PAGE, total);
  }

  /**
   * Update multiple contacts (POST /contacts/batch), each row Brevo's contact id and the attribute
   * only: it updates the contact with that id and has nothing to create one from, so a contact
   * deleted since the listing stays deleted. 204: every row updated; 207: `failureIds` were not.
   */
  protected async sendBatch(...[call, target, batch]: UpdateArgs): Promise<P.ContactResult[]> {
    const rows = batch.filter((u) => BREVO_ID.test(u.contactId));
    const outcome = rows.length > 0 ? await this.writeBatch(call, target.fieldName, rows) : undefined;
    return batch.map(({ contactId }): P.ContactResult => {
      if (!BREVO_ID.test(contactId))
        return { contactId, status: 'rejected', reason: 'not a Brevo contact id' };
      if (outcome?.failed.has(contactId)) {
        const reason = 'Brevo did not update this contact (deleted since the listing, or refused)';
        return { contactId, status: 'rejected', reason };
      }
      if (outcome?.succeeded && !outcome.succeeded.has(contactId)) {
        return { contactId, status: 'rejected', reason: 'Brevo reported no outcome for this contact' };
      }
      return { contactId, status: 'updated' };
    });
  }

  /** The ids Brevo did not update, and those it says it did (a 207 only; a 204 updated all). */
  private async writeBatch(call: EspCall, field: string, rows: P.ContactUpdate[]) {
    const { status, body } = await call({
      method: 'POST',
      url: '/contacts/batch',
      json: { contacts: rows.map((u) => ({ id: Number(u.contactId), attributes: { [field]: u.value } })) },
    });
    if (status === 204) return { failed: new Set<string>() };
    if (status !== 207) throw new TransientError(`Brevo answered POST /contacts/batch with ${status}`);
    const answer = expectShape(partial, body, 'Brevo', 'POST /contacts/batch');
    return {
      failed: new Set(answer.failureIds.map(String)),
      succeeded: answer.successIds && new Set(answer.successIds.map(String)),
    };
  }
}

/** Brevo's contact ids are positive integers. */
const BREVO_ID = /^[1-9][0-9]{0,15}$/;
