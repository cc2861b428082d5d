// A fake beehiiv API v2: the endpoints espresso uses, with beehiiv's paths under /v2, bearer API
// keys (workspace-wide, or restricted to some publications: other publications answer 404), error
// bodies ({status, statusText, errors: [{message, code}]}), strict request shapes from beehiiv's API
// reference (unknown body keys and query parameters, limits outside 1..100, more than 1,000
// subscriptions in a bulk update: 400), cursor pages of subscriptions, bulk subscription updates
// as jobs (pending, processing, then complete or failed, with an error log naming refused rows),
// and beehiiv's limit: 180 requests a minute per organization (fixed windows), answered 429 with
// the RateLimit-* headers (RateLimit-Reset in epoch seconds, no Retry-After).
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import { closeServer, listenLocal } from '../support/listen';
import { BeehiivOAuth, OAuthFail } from './beehiiv-oauth';

export interface FakeSubscription {
  id: string;
  email: string;
  /** Custom field values by field display name. */
  fields: Map<string, string>;
}

export class FakeOrganization {
  /** Requests a minute beehiiv answers (tests that speed espresso up scale it alike). */
  perMinute = 180;
  /** While set (epoch seconds), every request answers 429 with this RateLimit-Reset. */
  rateLimitedUntil?: number;
  window = { minute: 0, count: 0 };
  readonly id = `work_${randomUUID()}`;
  constructor(
    readonly name: string,
    readonly ownerEmail: string,
  ) {}
}

export class FakePublication {
  readonly customFields = new Map<string, { id: string; kind: string; created: number }>();
  readonly subscriptions: FakeSubscription[] = [];
  /** Updates of these subscriptions are refused, each with a line in the job's error log. */
  readonly refused = new Set<string>();
  /** A job holding one of these subscriptions fails whole: nothing written, no error log. */
  readonly failJobsWith = new Set<string>();
  constructor(
    readonly id: string,
    readonly name: string,
    readonly organization: FakeOrganization,
  ) {}

  seed(n: number): string[] {
    const ids: string[] = [];
    for (let i = 0; i < n; i++) {
      const id = `sub_${randomUUID()}`;
      this.subscriptions.push({
        id,
        email: `reader${this.subscriptions.length}@example.com`,
        fields: new Map(),
      });
      ids.push(id);
    }
    return ids;
  }

  find(id: string) {
    return this.subscriptions.find((s) => s.id === id);
  }

  deleteField(display: string) {
    this.customFields.delete(display);
    for (const s of this.subscriptions) s.fields.delete(display);
  }
}

interface Job {
  id: string;
  publication: FakePublication;
  rows: Array<{ subscription_id: string; custom_fields?: Array<{ name: string; value: unknown }> }>;
  polls: number;
  status: 'pending' | 'processing' | 'complete' | 'failed';
  errorLog: string[];
}

export interface Recorded {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body?: unknown;
  status?: number;
}

class Fail extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  404: 'Not Found',
  429: 'Too Many Requests',
};
const KINDS = new Set(['string', 'integer', 'boolean', 'date', 'datetime', 'list', 'double']);
const LIST_QUERY = ['limit', 'page', 'expand[]', 'order_by', 'direction'];
const SUBSCRIPTION_QUERY = [
  ...LIST_QUERY,
  'cursor',
  'status',
  'tier',
  'premium_tiers[]',
  'premium_tier_ids[]',
  'email',
  'creation_date',
  'include_total',
];
const BULK_ROW_KEYS = new Set([
  'subscription_id',
  'tier',
  'stripe_customer_id',
  'unsubscribe',
  'custom_fields',
]);
const MAX_BULK = 1000;

export class BeehiivFake {
  readonly organizations: FakeOrganization[] = [];
  readonly publications = new Map<string, FakePublication>();
  /** API key -> its organization, and the publications it may see (undefined: all of them). */
  readonly keys = new Map<string, { organization: FakeOrganization; only?: Set<string> }>();
  readonly jobs = new Map<string, Job>();
  /** The OAuth2 server (under /oauth), and whose workspace consents next (default: a new one). */
  readonly oauth = new BeehiivOAuth();
  consentOrganization?: FakeOrganization;
  /** The host of the OAuth endpoints (the API is under `url`, `<origin>/v2`). */
  origin = '';
  readonly requests: Recorded[] = [];
  /** The states a job answers, one per poll, the last for good. */
  jobStates: Array<Job['status']> = ['pending', 'processing', 'complete'];
  /** Error log lines that do not name the subscription they are about. */
  anonymousErrors = false;
  /** Answer subscription pages as the pagination guide shows them (cursor under `pagination`). */
  nestCursor = false;
  private server!: http.Server;
  url = '';

  /** A new organization with `publications` publications and a workspace-wide key. */
  addOrganization(publications = 1): {
    organization: FakeOrganization;
    apiKey: string;
    publications: FakePublication[];
  } {
    const n = this.organizations.length + 1;
    const organization = new FakeOrganization(`Organization ${n}`, `owner${n}@example.com`);
    this.organizations.push(organization);
    const pubs = Array.from({ length: publications }, (_, i) =>
      this.addPublication(organization, `Newsletter ${i + 1}`),
    );
    return { organization, apiKey: this.addKey(organization), publications: pubs };
  }

  addPublication(organization: FakeOrganization, name: string): FakePublication {
    const publication = new FakePublication(`pub_${randomUUID()}`, name, organization);
    this.publications.set(publication.id, publication);
    return publication;
  }

  /** A key of the organization, restricted to `only` when given. */
  addKey(organization: FakeOrganization, only?: FakePublication[]): string {
    const key = `bh_${randomUUID().replace(/-/g, '')}`;
    this.keys.set(key, { organization, ...(only ? { only: new Set(only.map((p) => p.id)) } : {}) });
    return key;
  }

  async start(): Promise<this> {
    this.server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => this.handle(req, Buffer.concat(chunks), res));
    });
    this.origin = await listenLocal(this.server);
    this.url = `${this.origin}/v2`;
    return this;
  }

  stop(): Promise<void> {
    return closeServer(this.server);
  }

  private handle(req: http.IncomingMessage, raw: Buffer, res: http.ServerResponse) {
    const record: Recorded = { method: req.method!, url: req.url!, headers: req.headers };
    this.requests.push(record);
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    const send = (status: number, body: unknown) => {
      record.status = status;
      res.writeHead(status, headers);
      res.end(JSON.stringify(body));
    };
    if (req.url!.startsWith('/oauth/')) return this.handleOAuth(req, raw, res, record);
    try {
      let body: unknown;
      if (req.method === 'POST' || req.method === 'PUT') {
        if (!String(req.headers['content-type']).startsWith('application/json')) {
          throw new Fail(400, 'invalid_content_type', 'Content-Type must be application/json');
        }
        try {
          body = JSON.parse(raw.toString('utf8'));
        } catch {
          throw new Fail(400, 'invalid_json', 'The request body is not valid JSON');
        }
        record.body = body;
      }
      const auth = /^Bearer (\S+)$/.exec(String(req.headers.authorization ?? ''))?.[1] ?? '';
      const token = this.oauth.bearer(auth);
      const key = this.keys.get(auth) ?? token;
      if (!key) throw new Fail(401, 'unauthorized', 'Invalid or missing API key');
      const path = new URL(req.url!, 'http://x').pathname;
      if (token && !token.scopes.includes(scopeFor(req.method!, path))) {
        throw new Fail(403, 'forbidden', `The token lacks the ${scopeFor(req.method!, path)} scope`);
      }
      const { organization } = key;
      const now = Date.now();
      const minute = Math.floor(now / 60_000);
      if (organization.window.minute !== minute) organization.window = { minute, count: 0 };
      const remaining = organization.perMinute - organization.window.count;
      headers['ratelimit-limit'] = String(organization.perMinute);
      headers['ratelimit-reset'] = String(organization.rateLimitedUntil ?? (minute + 1) * 60);
      if (organization.rateLimitedUntil !== undefined || remaining <= 0) {
        headers['ratelimit-remaining'] = '0';
        throw new Fail(429, 'rate_limited', 'Too many requests');
      }
      organization.window.count++;
      headers['ratelimit-remaining'] = String(remaining - 1);
      send(200, this.route(key, req.method!, new URL(req.url!, 'http://x'), body));
    } catch (err) {
      if (!(err instanceof Fail)) throw err;
      send(err.status, {
        status: err.status,
        statusText: STATUS_TEXT[err.status] ?? 'Error',
        errors: [{ message: err.message, code: err.code }],
      });
    }
  }

  private handleOAuth(req: http.IncomingMessage, raw: Buffer, res: http.ServerResponse, record: Recorded) {
    const url = new URL(req.url!, 'http://x');
    try {
      if (req.method === 'GET' && url.pathname === '/oauth/authorize') {
        let organization = this.consentOrganization;
        if (!organization) {
          organization = this.addOrganization(1).organization;
        }
        record.status = 302;
        res.writeHead(302, { location: this.oauth.authorize(url.searchParams, organization) });
        return void res.end();
      }
      if (req.method === 'POST' && url.pathname === '/oauth/token') {
        if (!String(req.headers['content-type']).startsWith('application/x-www-form-urlencoded')) {
          throw new OAuthFail(400, 'invalid_request', 'Send the parameters form-encoded');
        }
        const answer = this.oauth.token(new URLSearchParams(raw.toString('utf8')));
        record.status = 200;
        res.writeHead(200, { 'content-type': 'application/json' });
        return void res.end(JSON.stringify(answer));
      }
      throw new OAuthFail(404, 'not_found', 'No such OAuth endpoint');
    } catch (err) {
      if (!(err instanceof OAuthFail)) throw err;
      record.status = err.status;
      res.writeHead(err.status, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: err.error, error_description: err.message }));
    }
  }

  private route(
    key: { organization: FakeOrganization; only?: Set<string> },
    method: string,
    url: URL,
    body: unknown,
  ): unknown {
    const path = url.pathname.replace(/^\/v2/, '');
    if (method === 'GET' && path === '/workspaces/identify') {
      noQuery(url);
      const o = key.organization;
      return { data: { id: o.id, name: o.name, owner_email: o.ownerEmail } };
    }
    if (method === 'GET' && path === '/publications') {
      const { limit, page } = offsetQuery(url, LIST_QUERY);
      const all = [...this.publications.values()].filter(
        (p) => p.organization === key.organization && (!key.only || key.only.has(p.id)),
      );
      return paged(all, limit, page, (p) => ({
        id: p.id,
        name: p.name,
        organization_name: p.organization.name,
        referral_program_enabled: false,
        created: 1_700_000_000,
      }));
    }
    const m = /^\/publications\/([^/]+)(\/.*)$/.exec(path);
    if (!m) throw new Fail(404, 'not_found', `No route ${method} ${path}`);
    if (!/^pub_[0-9a-fA-F-]+$/.test(m[1]!))
      throw new Fail(400, 'invalid_parameter', 'publicationId is invalid');
    const publication = this.publications.get(m[1]!);
    // A key restricted to other publications sees this one as missing.
    if (
      !publication ||
      publication.organization !== key.organization ||
      (key.only && !key.only.has(publication.id))
    ) {
      throw new Fail(404, 'not_found', 'Publication not found');
    }
    const rest = m[2]!;
    if (method === 'GET' && rest === '/custom_fields') {
      const { limit, page } = offsetQuery(url, LIST_QUERY);
      return paged([...publication.customFields], limit, page, ([display, f]) => ({
        id: f.id,
        kind: f.kind,
        display,
        created: f.created,
      }));
    }
    if (method === 'POST' && rest === '/custom_fields') {
      noQuery(url);
      const b = object(body, new Set(['kind', 'display']));
      if (typeof b.kind !== 'string' || !KINDS.has(b.kind))
        throw new Fail(400, 'invalid_parameter', 'kind is invalid');
      if (typeof b.display !== 'string' || !b.display.trim())
        throw new Fail(400, 'invalid_parameter', 'display is required');
      if (publication.customFields.has(b.display)) {
        throw new Fail(400, 'invalid_parameter', 'A custom field with this display name already exists');
      }
      const field = { id: randomUUID(), kind: b.kind, created: Math.floor(Date.now() / 1000) };
      publication.customFields.set(b.display, field);
      return { data: { id: field.id, kind: field.kind, display: b.display, created: field.created } };
    }
    if (method === 'GET' && rest === '/subscriptions') return this.listSubscriptions(publication, url);
    if (method === 'PUT' && rest === '/subscriptions/bulk_actions') {
      noQuery(url);
      return this.startBulkUpdate(publication, object(body, new Set(['subscriptions'])));
    }
    const job = /^\/bulk_subscription_updates\/([^/]+)$/.exec(rest);
    if (method === 'GET' && job) {
      noQuery(url);
      return { data: this.pollJob(publication, decodeURIComponent(job[1]!)) };
    }
    throw new Fail(404, 'not_found', `No route ${method} ${path}`);
  }

  private listSubscriptions(publication: FakePublication, url: URL) {
    const { limit } = offsetQuery(url, SUBSCRIPTION_QUERY);
    const cursor = url.searchParams.get('cursor');
    if (cursor !== null && url.searchParams.has('page')) {
      throw new Fail(400, 'invalid_parameter', 'Use either cursor or page, not both');
    }
    const expand = url.searchParams.getAll('expand[]');
    for (const e of expand) {
      if (!['stats', 'custom_fields', 'referrals', 'subscription_premium_tiers'].includes(e)) {
        throw new Fail(400, 'invalid_parameter', `expand[] ${e} is invalid`);
      }
    }
    let from = 0;
    if (cursor) {
      const decoded = /^after:(\d+)$/.exec(Buffer.from(cursor, 'base64url').toString('utf8'));
      if (!decoded) throw new Fail(400, 'invalid_parameter', 'cursor is invalid');
      from = Number(decoded[1]);
    }
    const slice = publication.subscriptions.slice(from, from + limit);
    const more = from + limit < publication.subscriptions.length;
    const cursorFields = {
      limit,
      has_more: more,
      next_cursor: more ? Buffer.from(`after:${from + limit}`).toString('base64url') : null,
    };
    return {
      ...(this.nestCursor ? { pagination: cursorFields } : cursorFields),
      data: slice.map((s) => ({
        id: s.id,
        email: s.email,
        status: 'active',
        created: 1_700_000_000,
        subscription_tier: 'free',
        ...(expand.includes('custom_fields')
          ? {
              custom_fields: [...publication.customFields]
                .filter(([display]) => s.fields.has(display))
                .map(([display, f]) => ({ name: display, kind: f.kind, value: s.fields.get(display) })),
            }
          : {}),
      })),
    };
  }

  private startBulkUpdate(publication: FakePublication, b: Record<string, unknown>) {
    if (!Array.isArray(b.subscriptions) || b.subscriptions.length === 0) {
      throw new Fail(400, 'invalid_parameter', 'subscriptions must be a non-empty array');
    }
    if (b.subscriptions.length > MAX_BULK) {
      throw new Fail(400, 'invalid_parameter', `subscriptions may hold at most ${MAX_BULK} objects`);
    }
    const rows = b.subscriptions.map((r) => {
      const row = object(r, BULK_ROW_KEYS);
      if (typeof row.subscription_id !== 'string' || !row.subscription_id) {
        throw new Fail(400, 'invalid_parameter', 'subscription_id is required');
      }
      if (row.custom_fields !== undefined) {
        if (!Array.isArray(row.custom_fields))
          throw new Fail(400, 'invalid_parameter', 'custom_fields must be an array');
        for (const f of row.custom_fields) {
          const field = object(f, new Set(['name', 'value', 'delete']));
          if (typeof field.name !== 'string')
            throw new Fail(400, 'invalid_parameter', 'custom_fields[].name is required');
        }
      }
      return row as Job['rows'][number];
    });
    const job: Job = { id: randomUUID(), publication, rows, polls: 0, status: 'pending', errorLog: [] };
    this.jobs.set(job.id, job);
    return { data: { subscription_update_id: job.id } };
  }

  private pollJob(publication: FakePublication, id: string) {
    const job = this.jobs.get(id);
    if (!job || job.publication !== publication)
      throw new Fail(404, 'not_found', 'Subscription update not found');
    if (job.status === 'pending' || job.status === 'processing') {
      job.polls++;
      const next = this.jobStates[Math.min(job.polls, this.jobStates.length) - 1]!;
      const poisoned = job.rows.some((r) => job.publication.failJobsWith.has(r.subscription_id));
      job.status = next === 'complete' && poisoned ? 'failed' : next;
      if (job.status === 'complete') this.apply(job);
    }
    return {
      id: job.id,
      type: 'bulk',
      status: job.status,
      publication_id: publication.id,
      failure_reason: job.status === 'failed' ? 'The update could not be processed' : null,
      completed: job.status === 'complete' ? Math.floor(Date.now() / 1000) : null,
      created: Math.floor(Date.now() / 1000),
      updated: Math.floor(Date.now() / 1000),
      error_log: job.errorLog,
    };
  }

  /** Writes each row; a row beehiiv refuses leaves its subscription as it was and logs a line. */
  private apply(job: Job) {
    const { publication } = job;
    for (const row of job.rows) {
      const subscription = publication.find(row.subscription_id);
      if (!subscription) {
        job.errorLog.push(`Subscription ${row.subscription_id} not found`);
        continue;
      }
      if (publication.refused.has(subscription.id)) {
        const who = this.anonymousErrors ? 'A subscription' : `Subscription ${subscription.id}`;
        job.errorLog.push(`${who} (${subscription.email}) could not be updated: subscription is locked`);
        continue;
      }
      const unknown = (row.custom_fields ?? []).find((f) => !publication.customFields.has(f.name));
      if (unknown) {
        job.errorLog.push(`Subscription ${subscription.id}: custom field ${unknown.name} does not exist`);
        continue;
      }
      for (const f of row.custom_fields ?? []) subscription.fields.set(f.name, String(f.value));
    }
  }
}

/** limit (1..100, default 10) and page (from 1), refusing query parameters the endpoint does not take. */
function offsetQuery(url: URL, allowed: string[]): { limit: number; page: number } {
  for (const k of url.searchParams.keys()) {
    if (!allowed.includes(k)) throw new Fail(400, 'invalid_parameter', `Unknown query parameter ${k}`);
  }
  const limit = Number(url.searchParams.get('limit') ?? 10);
  const page = Number(url.searchParams.get('page') ?? 1);
  if (!Number.isInteger(limit) || limit < 1 || limit > 100) {
    throw new Fail(400, 'invalid_parameter', 'limit must be between 1 and 100');
  }
  if (!Number.isInteger(page) || page < 1)
    throw new Fail(400, 'invalid_parameter', 'page must be at least 1');
  return { limit, page };
}

function paged<T>(all: T[], limit: number, page: number, map: (item: T) => unknown) {
  return {
    data: all.slice((page - 1) * limit, page * limit).map(map),
    limit,
    page,
    total_results: all.length,
    total_pages: Math.ceil(all.length / limit),
  };
}

function noQuery(url: URL) {
  for (const k of url.searchParams.keys())
    throw new Fail(400, 'invalid_parameter', `Unknown query parameter ${k}`);
}

/** An object with only the allowed keys, else beehiiv's 400. */
function object(value: unknown, allowed: Set<string>): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new Fail(400, 'invalid_parameter', 'Expected a JSON object');
  }
  for (const k of Object.keys(value))
    if (!allowed.has(k)) throw new Fail(400, 'invalid_parameter', `Unknown field ${k}`);
  return value as Record<string, unknown>;
}

/** The scope an OAuth token needs for a request: its resource, read for GET and write otherwise. */
function scopeFor(method: string, path: string): string {
  if (path.endsWith('/workspaces/identify')) return 'identify:read';
  const resource = /\/(custom_fields|subscriptions|bulk_subscription_updates)\b/.exec(path)?.[1];
  const name = resource === 'bulk_subscription_updates' ? 'subscriptions' : (resource ?? 'publications');
  return `${name}:${method === 'GET' ? 'read' : 'write'}`;
}
