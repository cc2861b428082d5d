// A fake Klaviyo API (revision 2026-07-15) for the processor tests: the endpoints espresso uses,
// with Klaviyo's paths, auth scheme, JSON:API bodies, error format, cursor pages and 429s, and the
// bulk import jobs espresso no longer writes with, which upsert as Klaviyo documents (a row that
// matches no profile creates one; docs/esps/klaviyo.md). Request shapes are checked strictly against
// the documented schemas (hand-written here): a request the real API would refuse is refused with
// Klaviyo's 400 error body.
import { randomBytes, randomUUID } from 'node:crypto';
import http from 'node:http';
import { closeServer, listenLocal } from '../support/listen';

export interface FakeProfile {
  id: string;
  email?: string;
  external_id?: string;
  properties: Record<string, unknown>;
}

interface ImportRow {
  type: 'profile';
  id?: string | null;
  attributes: { email?: string | null; external_id?: string | null; properties?: Record<string, unknown> };
}

interface FakeJob {
  id: string;
  account: FakeAccount;
  rows: ImportRow[];
  polls: number;
  status: 'queued' | 'processing' | 'complete';
  created: string;
  errors: Array<{ id: string; row: number; code: string; title: string; detail: string }>;
}

export interface FakeAccount {
  id: string;
  name: string;
  apiKey: string;
  profiles: Map<string, FakeProfile>;
  /** Profile ids whose updates Klaviyo refuses (409 to an update, an import error in a job). */
  refused: Set<string>;
  /** The key's scopes (a new account's key has every scope espresso needs). */
  scopes: Set<string>;
  /** Every answer is a 429, as when the publisher's other integrations have used up the quota. */
  rateLimited: boolean;
  /**
   * Every limit is this many times Klaviyo's, for a processor sped up as much (test harnesses);
   * 1 is Klaviyo's own.
   */
  limitScale: number;
  /** Requests answered in the current fixed windows, per endpoint. */
  windows: Map<string, { second: number; inSecond: number; minute: number; inMinute: number }>;
  /** The next 2xx answer to this path prefix is replaced by a bad-shaped body. */
  malformedNext?: string;
}

export interface RecordedRequest {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body?: unknown;
  status?: number;
  /** Epoch ms the request arrived. */
  at: number;
}

// The GA revisions this fake knows (Klaviyo refuses a date that is no revision); `.pre` betas too.
const REVISIONS = new Set(['2025-07-15', '2025-10-15', '2026-01-15', '2026-04-15', '2026-07-15']);
const REVISION = /^(\d{4}-\d{2}-\d{2})(\.pre)?$/;
const MAX_JOB_PROFILES = 10_000;
const MAX_JOB_BYTES = 5 * 1024 * 1024;
export const RETRY_AFTER_SECONDS = 3;

/**
 * What each endpoint needs and allows, per Klaviyo's API reference at this revision: the key's
 * scopes, and its own per-account fixed windows of one second (burst) and one minute (steady).
 */
interface Endpoint {
  name: string;
  scopes: string[];
  burst: number;
  steady: number;
}
const ENDPOINTS: Array<{ method: string; path: RegExp; endpoint: Endpoint }> = [
  {
    method: 'GET',
    path: /^\/api\/accounts$/,
    endpoint: { name: 'Get Accounts', scopes: ['accounts:read'], burst: 1, steady: 15 },
  },
  {
    method: 'GET',
    path: /^\/api\/profiles$/,
    endpoint: { name: 'Get Profiles', scopes: ['profiles:read'], burst: 75, steady: 750 },
  },
  {
    method: 'POST',
    path: /^\/api\/profiles$/,
    endpoint: { name: 'Create Profile', scopes: ['profiles:write'], burst: 75, steady: 700 },
  },
  {
    method: 'PATCH',
    path: /^\/api\/profiles\/[^/]+$/,
    endpoint: { name: 'Update Profile', scopes: ['profiles:write'], burst: 75, steady: 750 },
  },
  {
    method: 'POST',
    path: /^\/api\/profile-bulk-import-jobs$/,
    endpoint: {
      name: 'Bulk Import Profiles',
      scopes: ['lists:write', 'profiles:write'],
      burst: 10,
      steady: 150,
    },
  },
  {
    method: 'GET',
    path: /^\/api\/profile-bulk-import-jobs\/[^/]+(\/import-errors)?$/,
    endpoint: {
      name: 'Get Bulk Import Job',
      scopes: ['lists:read', 'profiles:read'],
      burst: 10,
      steady: 150,
    },
  },
];
/** The scopes a new account's key has: what docs/esps/klaviyo.md tells the publisher to give. */
export const ESPRESSO_SCOPES = ['accounts:read', 'profiles:read', 'profiles:write'];
const PROFILE_ATTRIBUTES = new Set([
  'email',
  'phone_number',
  'external_id',
  '_kx',
  'first_name',
  'last_name',
  'organization',
  'locale',
  'title',
  'image',
  'location',
  'properties',
]);
const PROFILE_FIELDS = new Set([
  'created',
  'email',
  'external_id',
  'first_name',
  'id',
  'image',
  'last_event_date',
  'last_name',
  'locale',
  'location',
  'organization',
  'phone_number',
  'properties',
  'subscriptions',
  'title',
  'updated',
]);
const JOB_FIELDS = new Set([
  'completed_at',
  'completed_count',
  'created_at',
  'expires_at',
  'failed_count',
  'id',
  'started_at',
  'status',
  'total_count',
]);
const ACCOUNT_FIELDS = new Set([
  'contact_information',
  'contact_information.organization_name',
  'contact_information.default_sender_name',
  'contact_information.default_sender_email',
  'id',
  'industry',
  'locale',
  'preferred_currency',
  'public_api_key',
  'test_account',
  'timezone',
]);

class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    readonly title: string,
    detail: string,
    readonly pointer?: string,
    readonly headers: Record<string, string> = {},
    readonly meta?: object,
  ) {
    super(detail);
  }
}

const invalid = (detail: string, pointer?: string) =>
  new ApiError(400, 'invalid', 'Invalid input.', detail, pointer);

export class KlaviyoFake {
  readonly accounts = new Map<string, FakeAccount>();
  readonly requests: RecordedRequest[] = [];
  readonly jobs = new Map<string, FakeJob>();
  private readonly server: http.Server;
  private seq = 0;
  url = '';

  constructor() {
    this.server = http.createServer((req, res) => void this.handle(req, res));
  }

  async start(): Promise<this> {
    this.url = await listenLocal(this.server);
    return this;
  }

  stop(): Promise<void> {
    return closeServer(this.server);
  }

  // ---- inspection helpers ----

  newAccount(): FakeAccount {
    const id = randomBytes(3).toString('hex').toUpperCase();
    const account: FakeAccount = {
      id,
      name: `Publisher ${id}`,
      apiKey: `pk_${randomBytes(17).toString('hex')}`,
      profiles: new Map(),
      refused: new Set(),
      scopes: new Set(ESPRESSO_SCOPES),
      rateLimited: false,
      limitScale: 1,
      windows: new Map(),
    };
    this.accounts.set(account.apiKey, account);
    return account;
  }

  /** Adds `n` profiles (person<N>@example.com); returns their ids in creation (= id) order. */
  seed(account: FakeAccount, n: number): string[] {
    const ids: string[] = [];
    for (let i = 0; i < n; i++) {
      const id = this.profileId();
      account.profiles.set(id, { id, email: `person${this.seq}@example.com`, properties: {} });
      ids.push(id);
    }
    return ids;
  }

  /** What "deleting a custom property" is in Klaviyo: removing it from every profile. */
  deleteProperty(account: FakeAccount, name: string): void {
    for (const p of account.profiles.values()) delete p.properties[name];
  }

  propertyExists(account: FakeAccount, name: string): boolean {
    return [...account.profiles.values()].some((p) => p.properties[name] !== undefined);
  }

  /** Klaviyo-like ids: 26 characters, increasing, so id order is creation order. */
  private profileId(): string {
    return `01K${(++this.seq).toString(32).toUpperCase().padStart(23, '0')}`;
  }

  // ---- HTTP ----

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    // Counted when it arrives, as Klaviyo counts, not when its body has been read.
    const at = Date.now();
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const raw = Buffer.concat(chunks);
    const record: RecordedRequest = {
      method: req.method ?? 'GET',
      url: req.url ?? '/',
      headers: req.headers,
      at,
    };
    this.requests.push(record);
    let status = 200;
    let payload: unknown;
    let headers: Record<string, string> = {};
    try {
      const account = this.authenticate(req);
      if (raw.length > 0) {
        if (raw.length > MAX_JOB_BYTES)
          throw new ApiError(
            413,
            'request_too_large',
            'Request too large.',
            'The payload is larger than 5MB.',
          );
        const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim();
        // Klaviyo documents application/vnd.api+json; it also takes application/json.
        if (type !== 'application/vnd.api+json' && type !== 'application/json') {
          throw new ApiError(
            415,
            'unsupported_media_type',
            'Unsupported media type.',
            `Unsupported media type "${type}" in request.`,
          );
        }
        try {
          record.body = JSON.parse(raw.toString('utf8'));
        } catch {
          throw new ApiError(400, 'parse_error', 'Parse error.', 'JSON parse error.');
        }
      }
      const url = new URL(req.url ?? '/', this.url);
      const endpoint = ENDPOINTS.find(
        (e) => e.method === record.method && e.path.test(url.pathname),
      )?.endpoint;
      if (endpoint) requireScopes(account, endpoint);
      if (account.rateLimited) throw throttled(RETRY_AFTER_SECONDS);
      if (endpoint) headers = countRequest(account, endpoint, record.at);
      [status, payload] = this.route(account, record.method, url, record.body);
      if (account.malformedNext && url.pathname.startsWith(account.malformedNext)) {
        account.malformedNext = undefined;
        payload = { data: { unexpected: true }, links: 'not-links' };
      }
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      status = err.status;
      // An answer refused after counting keeps the window's headers; a 429 has only its own.
      headers = err.status === 429 ? err.headers : { ...headers, ...err.headers };
      payload = {
        errors: [
          {
            id: randomUUID(),
            status: err.status,
            code: err.code,
            title: err.title,
            detail: err.message,
            source: err.pointer ? { pointer: err.pointer } : {},
            ...(err.meta ? { meta: err.meta } : {}),
          },
        ],
      };
    }
    record.status = status;
    res.writeHead(status, { 'content-type': 'application/vnd.api+json', ...headers });
    res.end(payload === undefined ? '' : JSON.stringify(payload));
  }

  private authenticate(req: http.IncomingMessage): FakeAccount {
    const auth = req.headers.authorization;
    if (!auth)
      throw new ApiError(
        401,
        'not_authenticated',
        'Authentication credentials were not provided.',
        'Missing or invalid authorization scheme. Please use Klaviyo-API-Key.',
      );
    const m = /^Klaviyo-API-Key (\S+)$/.exec(auth);
    const account = m ? this.accounts.get(m[1]!) : undefined;
    if (!account)
      throw new ApiError(
        401,
        'authentication_failed',
        'Incorrect authentication credentials.',
        'Incorrect authentication credentials.',
      );
    const revision = req.headers.revision;
    if (typeof revision !== 'string' || !REVISION.test(revision)) {
      throw invalid('You must specify a valid API revision in the "revision" header (YYYY-MM-DD).');
    }
    if (!REVISIONS.has(REVISION.exec(revision)![1]!)) throw invalid(`Invalid revision: ${revision}.`);
    const accept = req.headers.accept ?? '*/*';
    if (!/application\/vnd\.api\+json|application\/json|\*\/\*/.test(accept)) {
      throw new ApiError(
        406,
        'not_acceptable',
        'Not acceptable.',
        `Could not satisfy the request Accept header "${accept}".`,
      );
    }
    return account;
  }

  private route(account: FakeAccount, method: string, url: URL, body: unknown): [number, unknown] {
    const path = url.pathname;
    const q = url.searchParams;
    let m: RegExpExecArray | null;
    if (method === 'GET' && path === '/api/accounts') {
      allowQuery(q, ['fields[account]']);
      fields(q, 'fields[account]', ACCOUNT_FIELDS);
      noBody(body);
      return [200, { data: [this.accountResource(account, q)], links: { self: url.toString() } }];
    }
    if (method === 'GET' && path === '/api/profiles') return [200, this.listProfiles(account, url)];
    if (method === 'POST' && path === '/api/profiles') return this.createProfile(account, body);
    if (method === 'PATCH' && (m = /^\/api\/profiles\/([^/]+)$/.exec(path)))
      return this.patchProfile(account, m[1]!, body);
    if (method === 'POST' && path === '/api/profile-bulk-import-jobs') {
      allowQuery(q, ['fields[profile-bulk-import-job]']);
      return [202, this.jobResource(this.createJob(account, body), q)];
    }
    if (method === 'GET' && (m = /^\/api\/profile-bulk-import-jobs\/([^/]+)$/.exec(path))) {
      allowQuery(q, ['fields[profile-bulk-import-job]', 'fields[list]', 'include']);
      fields(q, 'fields[profile-bulk-import-job]', JOB_FIELDS);
      noBody(body);
      return [200, this.jobResource(this.pollJob(account, m[1]!), q)];
    }
    if (method === 'GET' && (m = /^\/api\/profile-bulk-import-jobs\/([^/]+)\/import-errors$/.exec(path))) {
      noBody(body);
      return [200, this.importErrors(account, m[1]!, url)];
    }
    throw new ApiError(404, 'not_found', 'Not found.', `No ${method} ${path} endpoint.`);
  }

  private accountResource(account: FakeAccount, q: URLSearchParams) {
    const wanted = q.get('fields[account]')?.split(',');
    const all = {
      test_account: false,
      contact_information: { organization_name: account.name, default_sender_name: account.name },
      timezone: 'US/Eastern',
      preferred_currency: 'USD',
      public_api_key: account.id,
      locale: 'en-US',
    };
    const attributes = wanted
      ? wanted.includes('contact_information.organization_name') || wanted.includes('contact_information')
        ? { contact_information: { organization_name: account.name } }
        : {}
      : all;
    return {
      type: 'account',
      id: account.id,
      attributes,
      links: { self: `${this.url}/api/accounts/${account.id}` },
    };
  }

  private listProfiles(account: FakeAccount, url: URL) {
    const q = url.searchParams;
    allowQuery(q, [
      'fields[profile]',
      'filter',
      'page[size]',
      'page[cursor]',
      'sort',
      'additional-fields[profile]',
    ]);
    const wanted = fields(q, 'fields[profile]', PROFILE_FIELDS);
    const size = pageSize(q);
    if (q.has('sort') && q.get('sort') !== 'id') throw invalid('This fake sorts by id only.', undefined);
    let profiles = [...account.profiles.values()];
    const filter = q.get('filter');
    if (filter !== null) {
      const f = /^equals\((external_id|id|email),["']([^"']*)["']\)$/.exec(filter);
      if (!f) throw invalid(`Invalid filter provided: ${filter}`);
      const [, key, value] = f;
      profiles = profiles.filter((p) => (key === 'id' ? p.id : p[key as 'email' | 'external_id']) === value);
    }
    let start = 0;
    const cursor = q.get('page[cursor]');
    if (cursor !== null) {
      const after = /^next::id::(.+)$/.exec(Buffer.from(cursor, 'base64url').toString('utf8'))?.[1];
      if (!after) throw invalid('Invalid page cursor.');
      start = profiles.findIndex((p) => p.id > after);
      if (start < 0) start = profiles.length;
    }
    const page = profiles.slice(start, start + size);
    const more = start + size < profiles.length;
    const next = new URL(url);
    next.searchParams.set('page[cursor]', Buffer.from(`next::id::${page.at(-1)?.id}`).toString('base64url'));
    return {
      data: page.map((p) => profileResource(p, wanted, this.url)),
      links: { self: url.toString(), next: more ? next.toString() : null, prev: null },
    };
  }

  private createProfile(account: FakeAccount, body: unknown): [number, unknown] {
    const data = resourceObject(body, 'profile', ['type', 'attributes']);
    const attributes = profileAttributes(data.attributes, '/data/attributes');
    const ids = ['email', 'phone_number', 'external_id'].filter((k) => typeof attributes[k] === 'string');
    if (!ids.length)
      throw invalid('One of email, phone_number, or external_id is required.', '/data/attributes');
    const duplicate = [...account.profiles.values()].find(
      (p) =>
        (attributes.email && p.email === attributes.email) ||
        (attributes.external_id && p.external_id === attributes.external_id),
    );
    if (duplicate) {
      throw new ApiError(
        409,
        'duplicate_profile',
        'Conflict.',
        'A profile already exists with one of these identifiers.',
        '/data/attributes',
        {},
        { duplicate_profile_id: duplicate.id },
      );
    }
    const id = this.profileId();
    const profile: FakeProfile = {
      id,
      ...(typeof attributes.email === 'string' ? { email: attributes.email } : {}),
      ...(typeof attributes.external_id === 'string' ? { external_id: attributes.external_id } : {}),
      properties: { ...(attributes.properties as Record<string, unknown> | undefined) },
    };
    account.profiles.set(id, profile);
    return [
      201,
      {
        data: profileResource(profile, undefined, this.url),
        links: { self: `${this.url}/api/profiles/${id}` },
      },
    ];
  }

  private patchProfile(account: FakeAccount, id: string, body: unknown): [number, unknown] {
    const data = resourceObject(body, 'profile', ['type', 'id', 'attributes', 'meta']);
    if (data.id !== id)
      throw new ApiError(
        409,
        'conflict',
        'Conflict.',
        'The id in the body does not match the id in the URL.',
        '/data/id',
      );
    const attributes = profileAttributes(data.attributes, '/data/attributes');
    const profile = account.profiles.get(id);
    // Update Profile updates the profile with the given id: it never creates one.
    if (!profile)
      throw new ApiError(404, 'not_found', 'Not found.', `A profile with id ${id} does not exist.`);
    if (account.refused.has(id)) {
      throw new ApiError(
        409,
        'conflict',
        'Conflict.',
        'This profile is locked by a pending merge and cannot be updated.',
      );
    }
    Object.assign(profile.properties, attributes.properties ?? {});
    return [
      200,
      {
        data: profileResource(profile, undefined, this.url),
        links: { self: `${this.url}/api/profiles/${id}` },
      },
    ];
  }

  private createJob(account: FakeAccount, body: unknown): FakeJob {
    const data = resourceObject(body, 'profile-bulk-import-job', ['type', 'attributes', 'relationships']);
    const attributes = object(data.attributes, '/data/attributes');
    onlyKeys(attributes, ['profiles'], '/data/attributes');
    const profiles = object(attributes.profiles, '/data/attributes/profiles');
    onlyKeys(profiles, ['data'], '/data/attributes/profiles');
    if (!Array.isArray(profiles.data) || profiles.data.length === 0) {
      throw invalid('profiles.data must be a non-empty array.', '/data/attributes/profiles/data');
    }
    if (profiles.data.length > MAX_JOB_PROFILES) {
      throw invalid(
        `A maximum of ${MAX_JOB_PROFILES} profiles may be submitted per job.`,
        '/data/attributes/profiles/data',
      );
    }
    const rows = profiles.data.map((row: unknown, i: number) => {
      const at = `/data/attributes/profiles/data/${i}`;
      const r = object(row, at);
      onlyKeys(r, ['type', 'id', 'attributes', 'meta'], at);
      if (r.type !== 'profile') throw invalid(`"type" must be "profile".`, `${at}/type`);
      if (r.id !== undefined && r.id !== null && typeof r.id !== 'string')
        throw invalid('"id" must be a string.', `${at}/id`);
      return {
        type: 'profile',
        id: r.id,
        attributes: profileAttributes(r.attributes, `${at}/attributes`),
      } as ImportRow;
    });
    const job: FakeJob = {
      id: randomBytes(13).toString('hex').toUpperCase().slice(0, 26),
      account,
      rows,
      polls: 0,
      status: 'queued',
      created: new Date().toISOString(),
      errors: [],
    };
    this.jobs.set(job.id, job);
    return job;
  }

  /** queued -> processing (first poll) -> complete (second poll): rows are applied then. */
  private pollJob(account: FakeAccount, id: string): FakeJob {
    const job = this.jobs.get(id);
    if (!job || job.account !== account)
      throw new ApiError(404, 'not_found', 'Not found.', `Job ${id} does not exist.`);
    job.polls++;
    if (job.status === 'queued') job.status = 'processing';
    else if (job.status === 'processing') {
      job.rows.forEach((row, i) => this.applyRow(account, job, row, i));
      job.status = 'complete';
    }
    return job;
  }

  /**
   * Klaviyo documents the import as an upsert: it updates the profiles that match and creates a
   * profile for a row that matches none. Nothing in its reference exempts a row keyed by an id
   * that no longer exists (the id is optional and "generated by Klaviyo"), so such a row, like any
   * row that matches nothing, creates a profile with a new id.
   */
  private applyRow(account: FakeAccount, job: FakeJob, row: ImportRow, i: number): void {
    const fail = (detail: string): void => {
      job.errors.push({ id: randomUUID(), row: i, code: 'invalid', title: 'Invalid input', detail });
    };
    const a = row.attributes;
    let profile = row.id ? account.profiles.get(row.id) : undefined;
    if (!profile && (a.email || a.external_id)) {
      profile = [...account.profiles.values()].find(
        (p) => (a.email && p.email === a.email) || (a.external_id && p.external_id === a.external_id),
      );
    }
    if (!profile) {
      const id = this.profileId();
      profile = {
        id,
        ...(a.email ? { email: a.email } : {}),
        ...(a.external_id ? { external_id: a.external_id } : {}),
        properties: {},
      };
      account.profiles.set(id, profile);
    }
    if (account.refused.has(profile.id))
      return fail('This profile is locked by a pending merge and cannot be updated.');
    Object.assign(profile.properties, a.properties ?? {});
  }

  private jobResource(job: FakeJob, q: URLSearchParams) {
    const wanted = q.get('fields[profile-bulk-import-job]')?.split(',');
    const done = job.status === 'complete';
    const all: Record<string, unknown> = {
      status: job.status,
      created_at: job.created,
      total_count: job.rows.length,
      completed_count: done ? job.rows.length - job.errors.length : 0,
      failed_count: done ? job.errors.length : 0,
      completed_at: done ? new Date().toISOString() : null,
      expires_at: null,
      started_at: job.status === 'queued' ? null : job.created,
    };
    const attributes = wanted
      ? Object.fromEntries(Object.entries(all).filter(([k]) => wanted.includes(k)))
      : all;
    const self = `${this.url}/api/profile-bulk-import-jobs/${job.id}`;
    return {
      data: {
        type: 'profile-bulk-import-job',
        id: job.id,
        attributes,
        relationships: {
          lists: { data: [], links: { self: `${self}/relationships/lists`, related: `${self}/lists` } },
          profiles: { links: { self: `${self}/relationships/profiles`, related: `${self}/profiles` } },
          'import-errors': { links: { related: `${self}/import-errors` } },
        },
        links: { self },
      },
    };
  }

  private importErrors(account: FakeAccount, id: string, url: URL) {
    const q = url.searchParams;
    allowQuery(q, ['fields[import-error]', 'page[size]', 'page[cursor]']);
    const job = this.jobs.get(id);
    if (!job || job.account !== account)
      throw new ApiError(404, 'not_found', 'Not found.', `Job ${id} does not exist.`);
    const size = pageSize(q);
    const start = q.has('page[cursor]')
      ? Number(Buffer.from(q.get('page[cursor]')!, 'base64url').toString())
      : 0;
    if (!Number.isInteger(start) || start < 0) throw invalid('Invalid page cursor.');
    const page = job.errors.slice(start, start + size);
    const next = new URL(url);
    next.searchParams.set('page[cursor]', Buffer.from(String(start + size)).toString('base64url'));
    return {
      data: page.map((e) => ({
        type: 'import-error',
        id: e.id,
        attributes: {
          code: e.code,
          title: e.title,
          detail: e.detail,
          source: { pointer: `/data/attributes/profiles/data/${e.row}` },
          original_payload: job.rows[e.row],
        },
      })),
      links: {
        self: url.toString(),
        next: start + size < job.errors.length ? next.toString() : null,
        prev: null,
      },
    };
  }
}

function requireScopes(account: FakeAccount, endpoint: Endpoint): void {
  const missing = endpoint.scopes.filter((scope) => !account.scopes.has(scope));
  if (missing.length)
    throw new ApiError(
      403,
      'permission_denied',
      'You do not have permission to perform this action.',
      `The API key specified is missing required scopes: ${missing.join(', ')}`,
    );
}

function throttled(seconds: number): ApiError {
  return new ApiError(
    429,
    'throttled',
    'Request was throttled.',
    `Request was throttled. Expected available in ${seconds} seconds.`,
    undefined,
    // A 429 carries Retry-After only; the RateLimit-* headers are on every other answer.
    { 'retry-after': String(seconds) },
  );
}

/**
 * Counts one request against its endpoint's fixed windows (a second, a minute, on the clock) and
 * returns the steady window's RateLimit-* headers; a 429 once either window is full, until it ends.
 */
function countRequest(account: FakeAccount, endpoint: Endpoint, at: number): Record<string, string> {
  const second = Math.floor(at / 1000);
  const minute = Math.floor(at / 60_000);
  let w = account.windows.get(endpoint.name);
  if (!w) account.windows.set(endpoint.name, (w = { second, inSecond: 0, minute, inMinute: 0 }));
  if (w.second !== second) Object.assign(w, { second, inSecond: 0 });
  if (w.minute !== minute) Object.assign(w, { minute, inMinute: 0 });
  const minuteEndsIn = Math.ceil(((minute + 1) * 60_000 - at) / 1000);
  const steady = endpoint.steady * account.limitScale;
  if (w.inMinute >= steady) throw throttled(minuteEndsIn);
  if (w.inSecond >= endpoint.burst * account.limitScale) throw throttled(1);
  w.inSecond++;
  w.inMinute++;
  return {
    'ratelimit-limit': String(steady),
    'ratelimit-remaining': String(steady - w.inMinute),
    'ratelimit-reset': String(minuteEndsIn),
  };
}

function profileResource(p: FakeProfile, wanted: Set<string> | undefined, base: string) {
  const all: Record<string, unknown> = {
    email: p.email ?? null,
    phone_number: null,
    external_id: p.external_id ?? null,
    first_name: null,
    last_name: null,
    properties: p.properties,
  };
  const attributes = wanted ? Object.fromEntries(Object.entries(all).filter(([k]) => wanted.has(k))) : all;
  return { type: 'profile', id: p.id, attributes, links: { self: `${base}/api/profiles/${p.id}` } };
}

// ---- strict request checks, after the documented schemas ----

function allowQuery(q: URLSearchParams, allowed: string[]): void {
  for (const key of q.keys()) {
    if (!allowed.includes(key))
      throw new ApiError(
        400,
        'invalid',
        'Invalid input.',
        `'${key}' is not a valid query parameter.`,
        undefined,
      );
  }
}

function fields(q: URLSearchParams, key: string, allowed: Set<string>): Set<string> | undefined {
  const value = q.get(key);
  if (value === null) return undefined;
  const wanted = value.split(',');
  for (const f of wanted) if (!allowed.has(f)) throw invalid(`'${f}' is not a valid field for ${key}.`);
  return new Set(wanted);
}

function pageSize(q: URLSearchParams): number {
  const raw = q.get('page[size]') ?? '20';
  const size = Number(raw);
  if (!/^\d+$/.test(raw) || size < 1 || size > 100)
    throw invalid('page[size] must be an integer between 1 and 100.');
  return size;
}

function noBody(body: unknown): void {
  if (body !== undefined) throw invalid('This endpoint takes no request body.');
}

function object(value: unknown, pointer: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw invalid('Must be an object.', pointer);
  return value as Record<string, unknown>;
}

function onlyKeys(value: Record<string, unknown>, allowed: string[], pointer: string): void {
  for (const key of Object.keys(value)) {
    if (!allowed.includes(key))
      throw invalid(`'${key}' is not a valid field for the resource.`, `${pointer}/${key}`);
  }
}

function resourceObject(body: unknown, type: string, allowed: string[]): Record<string, unknown> {
  const doc = object(body, '/');
  onlyKeys(doc, ['data'], '');
  const data = object(doc.data, '/data');
  onlyKeys(data, allowed, '/data');
  if (data.type !== type) throw invalid(`"type" must be "${type}".`, '/data/type');
  if (data.attributes === undefined) throw invalid('"attributes" is required.', '/data/attributes');
  return data;
}

function profileAttributes(value: unknown, pointer: string): Record<string, unknown> {
  const a = object(value, pointer);
  onlyKeys(a, [...PROFILE_ATTRIBUTES], pointer);
  for (const [k, v] of Object.entries(a)) {
    if (k === 'properties' || k === 'location') {
      if (v !== null) object(v, `${pointer}/${k}`);
    } else if (v !== null && typeof v !== 'string')
      throw invalid(`'${k}' must be a string.`, `${pointer}/${k}`);
  }
  return a;
}
