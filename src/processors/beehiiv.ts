// beehiiv (API v2): a workspace API key or OAuth, publications as lists, a subscription custom field
// written by bulk subscription updates (an asynchronous job with an error log). See docs/esps/beehiiv.md for
// the vendor facts and the points where espresso chose what the reference leaves open.
import { z } from 'zod';
import { BaseProcessor } from './base-processor';
import type { EspCall, ListingArgs, ProcessorDeps, UpdateArgs } from './base-processor';
import { RequestRejectedError, TransientError } from './errors';
import { pollJob, type JobPollOptions } from './kit/poll';
import { expectShape } from './kit/shape';
import { heldValue, listedContact } from './kit/values';
import type * as P from './types';

export interface BeehiivOptions extends JobPollOptions {
  /** espresso's OAuth app registered with beehiiv; without it publishers connect with API keys. */
  oauth?: { clientId: string; clientSecret: string };
  /** Default https://api.beehiiv.com/v2 (one API host for every workspace). */
  apiBaseUrl?: string;
  /** Where beehiiv's OAuth endpoints live (default https://app.beehiiv.com). */
  authBaseUrl?: string;
  /** How long one bulk update job is followed before the batch is retried (default 10 min). */
  jobWaitMs?: number;
}

const DEFAULT_API = 'https://api.beehiiv.com/v2';
/** The most objects a list endpoint answers per page. */
const PAGE_SIZE = 100;
/** Publications one key may see, read in pages of 100 (a workspace has a handful). */
const MAX_PUBLICATION_PAGES = 20;

const offsetPage = { page: z.number().int().nullish(), total_pages: z.number().int().nullish() };
const publications = z.object({
  data: z.array(z.object({ id: z.string().min(1), name: z.string().nullish() })),
  ...offsetPage,
});
// The workspace also carries its owner's email, which espresso never reads.
const workspace = z.object({ data: z.object({ id: z.string().min(1), name: z.string().nullish() }) });
const customFields = z.object({
  data: z.array(z.object({ id: z.string().min(1), display: z.string() })),
  ...offsetPage,
});
const cursorPage = { has_more: z.boolean().nullish(), next_cursor: z.string().nullish() };
const subscriptions = z.object({
  data: z.array(
    z.object({
      id: z.string().min(1),
      custom_fields: z.array(z.object({ name: z.string(), value: z.unknown() })).nullish(),
    }),
  ),
  ...cursorPage,
  // The pagination guide nests the cursor; the endpoint's reference puts it at the top level.
  pagination: z.object(cursorPage).nullish(),
});
const bulkStarted = z.object({ data: z.object({ subscription_update_id: z.string().min(1) }) });
const bulkUpdate = z.object({
  data: z.object({
    status: z.enum(['pending', 'processing', 'complete', 'failed']),
    failure_reason: z.string().nullish(),
    error_log: z.array(z.string()).nullish(),
  }),
});
type BulkUpdate = z.output<typeof bulkUpdate>['data'];

/** What espresso asks an OAuth grant for: name the workspace, read publications, read and create fields, read and update subscriptions. */
export const BEEHIIV_SCOPES = [
  'identify:read',
  'publications:read',
  'custom_fields:read',
  'custom_fields:write',
  'subscriptions:read',
  'subscriptions:write',
];

export class BeehiivProcessor extends BaseProcessor {
  readonly descriptor: P.ProcessorDescriptor;

  constructor(
    deps: ProcessorDeps,
    private readonly options: BeehiivOptions = {},
  ) {
    super(deps);
    this.descriptor = {
      id: 'beehiiv',
      displayName: 'beehiiv',
      ...(this.options.oauth
        ? {
            oauth2: {
              authorizeUrl: `${this.authBase()}/oauth/authorize`,
              tokenUrl: `${this.authBase()}/oauth/token`,
              scopes: BEEHIIV_SCOPES,
              pkce: true,
              clientId: this.options.oauth.clientId,
              clientSecret: this.options.oauth.clientSecret,
              // Access tokens last two hours.
              refreshMarginMs: 5 * 60_000,
            },
          }
        : {}),
      apiKey: { label: 'beehiiv API key' },
      // PUT /subscriptions/bulk_actions takes at most 1,000 subscriptions.
      maxBatchSize: 1000,
      // beehiiv's own pacing example keeps 5 requests in flight; espresso keeps 4.
      concurrency: 4,
      // 180 requests a minute per organization, shared by every key of the workspace: espresso takes
      // 120 (2/s), leaving a third to the publisher's other integrations (Zapier, Make, forms).
      rateLimit: { requests: 2, perMs: 1000 },
      mergeTag: (field) => `{{${field}}}`,
      // A custom field is named by its display text; espresso keeps to names every template reads.
      field: { maxLength: 64, case: 'preserve', allowed: /[A-Za-z0-9_]/ },
    };
  }

  private authBase(): string {
    return (this.options.authBaseUrl ?? 'https://app.beehiiv.com').replace(/\/$/, '');
  }

  protected baseUrl(target?: Pick<P.ProcessorTarget, 'apiBaseUrl'>): string {
    return (target?.apiBaseUrl ?? this.options.apiBaseUrl ?? DEFAULT_API).replace(/\/$/, '');
  }

  /**
   * GET /workspaces/identify names the workspace (the organization whose rate limit every key and
   * token shares: espresso's account); GET /publications lists the publications the key sees.
   */
  protected async validateCredentials(call: EspCall): Promise<P.AccountInfo> {
    const { body } = await call({ method: 'GET', url: '/workspaces/identify' });
    const { id, name } = expectShape(workspace, body, 'beehiiv', 'GET /workspaces/identify').data;
    const lists: P.AccountInfo['lists'] = [];
    for (let page = 1; page <= MAX_PUBLICATION_PAGES; page++) {
      const { body } = await call({ method: 'GET', url: '/publications', query: { limit: PAGE_SIZE, page } });
      const answer = expectShape(publications, body, 'beehiiv', 'GET /publications');
      lists.push(...answer.data.map((p) => ({ id: p.id, name: p.name || p.id })));
      if (answer.data.length < PAGE_SIZE || page >= (answer.total_pages ?? page)) break;
    }
    if (lists.length === 0) {
      throw new RequestRejectedError('this beehiiv key or sign-in has access to no publication');
    }
    return { accountId: id, accountLabel: name || id, lists };
  }

  /** Custom fields are per publication, found by their display name; a missing one is created. */
  protected async ensureField(call: EspCall, target: P.ProcessorTarget): Promise<'exists' | 'created'> {
    const url = `${this.publication(target)}/custom_fields`;
    for (let page = 1; ; page++) {
      const { body } = await call({ method: 'GET', url, query: { limit: PAGE_SIZE, page } });
      const answer = expectShape(customFields, body, 'beehiiv', 'GET /custom_fields');
      if (answer.data.some((f) => f.display === target.fieldName)) return 'exists';
      if (answer.data.length < PAGE_SIZE || page >= (answer.total_pages ?? page)) break;
    }
    await call({ method: 'POST', url, json: { kind: 'string', display: target.fieldName } });
    return 'created';
  }

  /**
   * List subscriptions (cursor pages of 100, custom fields expanded). beehiiv filters on status,
   * tier and email but not on a custom field, so the empty field is found here.
   */
  protected async fetchContactPage(...[call, target, cursor, mode]: ListingArgs): Promise<P.ContactPage> {
    const { body } = await call({
      method: 'GET',
      url: `${this.publication(target)}/subscriptions`,
      query: { limit: PAGE_SIZE, 'expand[]': 'custom_fields', cursor },
    });
    const page = expectShape(subscriptions, body, 'beehiiv', 'GET /subscriptions');
    const contacts = page.data.flatMap((s) => {
      const held = s.custom_fields?.find((f) => f.name === target.fieldName)?.value;
      return listedContact(s.id, heldValue(held), mode) ?? [];
    });
    const more = page.has_more ?? page.pagination?.has_more;
    const next = page.next_cursor ?? page.pagination?.next_cursor;
    if (!more) return { contacts };
    if (!next) throw new TransientError('beehiiv answered GET /subscriptions with more pages but no cursor');
    return { contacts, nextCursor: next };
  }

  /**
   * One bulk update job per batch, followed to its end. The job's error log is the per-row outcome:
   * a line naming a subscription rejects that row. A failed job, or lines that name no row, send
   * the batch back to the base class, which isolates the bad rows (rewriting the same values is safe).
   */
  protected async sendBatch(...[call, target, batch]: UpdateArgs): Promise<P.ContactResult[]> {
    const { body } = await call({
      method: 'PUT',
      url: `${this.publication(target)}/subscriptions/bulk_actions`,
      json: {
        subscriptions: batch.map((u) => ({
          subscription_id: u.contactId,
          custom_fields: [{ name: target.fieldName, value: u.value }],
        })),
      },
    });
    const jobId = expectShape(bulkStarted, body, 'beehiiv', 'PUT /subscriptions/bulk_actions').data
      .subscription_update_id;
    const job = await this.followJob(call, target, jobId);
    const lines = job.error_log ?? [];
    const reasons = new Map<string, string>();
    for (const u of batch) {
      const line = lines.find((l) => l.includes(u.contactId));
      if (line !== undefined) reasons.set(u.contactId, line);
    }
    const unnamed = lines.filter((l) => !batch.some((u) => l.includes(u.contactId)));
    if (job.status === 'failed' || unnamed.length > 0) {
      const rows = batch.flatMap((u, i) => (reasons.has(u.contactId) ? [i] : []));
      const why =
        job.status === 'failed'
          ? `beehiiv's bulk update failed: ${job.failure_reason || lines[0] || 'no reason given'}`
          : `beehiiv's bulk update refused a row: ${unnamed[0]}`;
      throw new RequestRejectedError(why, undefined, rows);
    }
    return batch.map(({ contactId }): P.ContactResult => {
      const reason = reasons.get(contactId);
      return reason === undefined
        ? { contactId, status: 'updated' }
        : { contactId, status: 'rejected', reason };
    });
  }

  /** Polls the bulk update until it ends; a job still running after jobWaitMs is a TransientError. */
  private async followJob(call: EspCall, target: P.ProcessorTarget, id: string): Promise<BulkUpdate> {
    const url = `${this.publication(target)}/bulk_subscription_updates/${encodeURIComponent(id)}`;
    const job = await pollJob(
      async () => {
        const { body } = await call({ method: 'GET', url });
        const update = expectShape(bulkUpdate, body, 'beehiiv', 'GET /bulk_subscription_updates').data;
        return update.status === 'complete' || update.status === 'failed' ? update : undefined;
      },
      {
        firstDelayMs: this.options.jobPollMs ?? 2_000,
        waitMs: this.options.jobWaitMs ?? 10 * 60_000,
        signal: call.signal,
      },
    );
    if (!job) throw new TransientError('the beehiiv bulk subscription update is still running');
    return job;
  }

  private publication(target: P.ProcessorTarget): string {
    if (!target.espListId) throw new RequestRejectedError('a beehiiv configuration needs a publication');
    return `/publications/${encodeURIComponent(target.espListId)}`;
  }
}
