// Mailchimp Marketing API v3. The field is one merge field per audience; contacts are keyed by
// email address (the batch endpoint takes nothing else). See docs/esps/mailchimp.md.
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { BaseProcessor } from './base-processor';
import type { EspCall, ListingArgs, ProcessorDeps, UpdateArgs } from './base-processor';
import { InvalidCredentialsError, RequestRejectedError } from './errors';
import { createUnlessRaced, offsetAfter, offsetOf } from './kit/field-create';
import { expectShape } from './kit/shape';
import { listedContact } from './kit/values';
import type * as P from './types';

export interface MailchimpProcessorOptions {
  /** Registered app; without it publishers connect with an API key only. */
  oauth?: { clientId: string; clientSecret: string };
  /** The API of a data center; `{dc}` is replaced by the key's suffix (e.g. us6). */
  apiBaseUrl?: string;
  /** OAuth authorize, token and metadata endpoints. */
  authBaseUrl?: string;
}

const API_URL = 'https://{dc}.api.mailchimp.com/3.0';
const AUTH_URL = 'https://login.mailchimp.com';
/** Members per listing request (Mailchimp's maximum `count`). */
const PAGE = 1000;

const root = z.object({ account_id: z.string().min(1), account_name: z.unknown().optional() });
const lists = z.object({
  lists: z.array(z.object({ id: z.unknown().optional(), name: z.unknown().optional() })),
});
const metadata = z.object({ api_endpoint: z.string().regex(/^https?:\/\//) });
const mergeFields = z.object({ merge_fields: z.array(z.object({ tag: z.unknown().optional() })) });
const members = z.object({
  members: z.array(
    z.object({
      email_address: z.string(),
      merge_fields: z.record(z.string(), z.unknown()).nullish(),
    }),
  ),
  total_items: z.number().int().nonnegative().optional(),
});
const member = z.object({ email_address: z.unknown().optional() });
const batchAnswer = z.object({
  updated_members: z.array(member),
  new_members: z.array(member.nullable()).nullish(),
  errors: z.array(
    z.object({
      email_address: z.unknown().optional(),
      error: z.unknown().optional(),
      error_code: z.unknown().optional(),
    }),
  ),
});

export class MailchimpProcessor extends BaseProcessor {
  readonly descriptor: P.ProcessorDescriptor;
  private readonly apiUrl: string;
  private readonly authUrl: string;

  constructor(deps: ProcessorDeps, options: MailchimpProcessorOptions = {}) {
    super(deps);
    this.apiUrl = options.apiBaseUrl ?? API_URL;
    this.authUrl = options.authBaseUrl ?? AUTH_URL;
    this.descriptor = {
      id: 'mailchimp',
      displayName: 'Mailchimp',
      ...(options.oauth && {
        oauth2: {
          authorizeUrl: `${this.authUrl}/oauth2/authorize`,
          tokenUrl: `${this.authUrl}/oauth2/token`,
          scopes: [], // Mailchimp has no scopes: a token acts as the user who granted it.
          pkce: false,
          clientId: options.oauth.clientId,
          clientSecret: options.oauth.clientSecret,
          refreshMarginMs: 60_000, // unused: Mailchimp tokens do not expire
        },
      }),
      apiKey: { label: 'Mailchimp API key' },
      maxBatchSize: 500, // members per POST /lists/{list_id}, Mailchimp's documented maximum
      concurrency: 8, // Mailchimp allows 10 simultaneous connections per user
      rateLimit: { requests: 10, perMs: 1_000 },
      mergeTag: (field) => `*|${field}|*`,
      field: { maxLength: 10, case: 'upper', allowed: /[A-Z0-9_]/ },
    };
  }

  protected baseUrl(target?: Pick<P.ProcessorTarget, 'apiBaseUrl'>): string {
    if (!target) return this.authUrl; // connect flow: validateCredentials uses absolute URLs
    if (!target.apiBaseUrl) {
      throw new InvalidCredentialsError('the configuration does not name its Mailchimp data center');
    }
    return target.apiBaseUrl;
  }

  protected override authHeaders(credentials: P.Credentials): Record<string, string> {
    return credentials.kind === 'apiKey'
      ? { authorization: `Basic ${Buffer.from(`espresso:${credentials.apiKey}`).toString('base64')}` }
      : { authorization: `Bearer ${credentials.accessToken}` };
  }

  protected async validateCredentials(call: EspCall, credentials: P.Credentials): Promise<P.AccountInfo> {
    const api = await this.apiBaseFor(call, credentials);
    const { body } = await call({
      method: 'GET',
      url: `${api}/`,
      query: { fields: 'account_id,account_name' },
    });
    const account = expectShape(root, body, 'Mailchimp', 'GET /');
    const audiences: P.AccountInfo['lists'] = [];
    for (let offset = 0; ; offset += PAGE) {
      const { body: page } = await call({
        method: 'GET',
        url: `${api}/lists`,
        query: { fields: 'lists.id,lists.name,total_items', count: PAGE, offset },
      });
      const found = expectShape(lists, page, 'Mailchimp', 'GET /lists').lists;
      for (const l of found) audiences.push({ id: String(l.id), name: String(l.name) });
      if (found.length < PAGE) break;
    }
    return {
      accountId: account.account_id,
      accountLabel: typeof account.account_name === 'string' ? account.account_name : account.account_id,
      lists: audiences,
      apiBaseUrl: api,
    };
  }

  /** The account's data center: the API key's suffix, or the OAuth metadata's api_endpoint. */
  private async apiBaseFor(call: EspCall, credentials: P.Credentials): Promise<string> {
    if (credentials.kind === 'apiKey') {
      const dc = /-([a-z]+[0-9]+)$/.exec(credentials.apiKey)?.[1];
      if (!dc) throw new InvalidCredentialsError('a Mailchimp API key ends in its data center, e.g. -us6');
      return this.apiUrl.replace('{dc}', dc);
    }
    const { body } = await call({
      method: 'GET',
      url: `${this.authUrl}/oauth2/metadata`,
      headers: { authorization: `OAuth ${credentials.accessToken}` },
    });
    const { api_endpoint } = expectShape(metadata, body, 'Mailchimp', 'GET /oauth2/metadata');
    return `${api_endpoint.replace(/\/$/, '')}/3.0`;
  }

  protected async ensureField(call: EspCall, target: P.ProcessorTarget): Promise<'exists' | 'created'> {
    const path = `/lists/${list(target)}/merge-fields`;
    const exists = async () => {
      const { body } = await call({
        method: 'GET',
        url: path,
        query: { fields: 'merge_fields.tag', count: PAGE },
      });
      const fields = expectShape(mergeFields, body, 'Mailchimp', 'GET merge-fields').merge_fields;
      return fields.some((f) => f.tag === target.fieldName);
    };
    if (await exists()) return 'exists';
    const create = () =>
      call({
        method: 'POST',
        url: path,
        json: { name: 'LiveConnect ID', tag: target.fieldName, type: 'text', public: false, required: false },
      });
    return createUnlessRaced(create, exists);
  }

  /**
   * Mailchimp cannot filter members on an empty merge field: every page of the audience is read
   * (oldest signup first, so new members append at the end) and filtered here. The cursor is the offset.
   */
  protected async fetchContactPage(...[call, target, cursor, mode]: ListingArgs): Promise<P.ContactPage> {
    const offset = offsetOf(cursor);
    const { body } = await call({
      method: 'GET',
      url: `/lists/${list(target)}/members`,
      query: {
        // The whole merge_fields object: a missed value would be overwritten in full runs.
        fields: 'members.email_address,members.merge_fields,total_items',
        count: PAGE,
        offset,
        sort_field: 'timestamp_signup',
        sort_dir: 'ASC',
      },
    });
    const { members: page, total_items: total } = expectShape(members, body, 'Mailchimp', 'GET members');
    const contacts = page.flatMap((m) => {
      const value = m.merge_fields?.[target.fieldName];
      const current = typeof value === 'string' && value !== '' ? value : undefined;
      return listedContact(m.email_address, current, mode) ?? [];
    });
    return page.length < PAGE
      ? { contacts, total }
      : { contacts, nextCursor: String(offset + page.length), total };
  }

  /** Offsets: the next page is known before this one answers. */
  override pageAfter(cursor: string | undefined, _mode: P.ListMode, total?: number): string | undefined {
    return offsetAfter(cursor, PAGE, total);
  }

  /**
   * Batch subscribe with `update_existing`, no `status` and `status_if_new: "unsubscribed"` (the
   * reference requires one of the two on every row): existing members get the merge field and keep
   * their subscription status; an address that is not a member could only ever be added
   * unsubscribed, and is archived again below.
   */
  protected async sendBatch(...[call, target, batch]: UpdateArgs): Promise<P.ContactResult[]> {
    const { body } = await call({
      method: 'POST',
      url: `/lists/${list(target)}`,
      query: { skip_merge_validation: true },
      json: {
        members: batch.map((u) => ({
          email_address: u.contactId,
          status_if_new: 'unsubscribed',
          merge_fields: { [target.fieldName]: u.value },
        })),
        update_existing: true,
      },
    });
    const answer = expectShape(batchAnswer, body, 'Mailchimp', 'POST list');
    const outcome = new Map<string, P.ContactResult['status'] | string>();
    for (const m of answer.updated_members) outcome.set(key(m.email_address), 'updated');
    // Should Mailchimp ever add an address that left the audience since the export, it is archived
    // again at once (DELETE archives a member) and the row reported: espresso never adds people.
    for (const m of answer.new_members ?? []) {
      const email = key(m?.email_address);
      if (!email) continue;
      await call({ method: 'DELETE', url: `/lists/${list(target)}/members/${subscriberHash(email)}` });
      outcome.set(
        email,
        'the address was not in the audience (Mailchimp added it; espresso archived it again)',
      );
    }
    for (const e of answer.errors) {
      const code = typeof e.error_code === 'string' ? `${e.error_code}: ` : '';
      outcome.set(key(e.email_address), `${code}${typeof e.error === 'string' ? e.error : 'refused'}`);
    }
    return batch.map((u): P.ContactResult => {
      const o = outcome.get(key(u.contactId));
      if (o === 'updated') return { contactId: u.contactId, status: 'updated' };
      return {
        contactId: u.contactId,
        status: 'rejected',
        reason: o ?? 'Mailchimp reported no outcome for this member',
      };
    });
  }
}

/** Mailchimp's member id: the MD5 of the lowercase address. */
function subscriberHash(email: string): string {
  return createHash('md5').update(email.toLowerCase()).digest('hex');
}

function key(email: unknown): string {
  return typeof email === 'string' ? email.trim().toLowerCase() : '';
}

function list(target: P.ProcessorTarget): string {
  if (!target.espListId)
    throw new RequestRejectedError('the configuration has no Mailchimp audience selected');
  return encodeURIComponent(target.espListId);
}
