// A fake Kit API v4 for the processor tests: the endpoints espresso uses, with Kit's paths, auth
// (X-Kit-Api-Key or an OAuth bearer token), `{ errors: [...] }` bodies, cursor pages, the bulk
// custom-field-values endpoint (OAuth only, answered at once up to 100 rows, queued above) and
// Kit's 429 (the plain text "Retry later", no Retry-After), counted per credential in 60-second
// windows. Request shapes are checked strictly against Kit's reference: a request Kit would refuse
// is refused with its status, and recorded in `problems`.
import { randomBytes, randomUUID } from 'node:crypto';
import http from 'node:http';
import { closeServer, listenLocal } from '../support/listen';

export interface FakeField {
  id: number;
  key: string;
  label: string;
}

export interface FakeSubscriber {
  id: number;
  email: string;
  state: 'active' | 'cancelled';
  /** Values by custom field id. */
  values: Map<number, string>;
}

export interface FakeKitAccount {
  id: number;
  name: string;
  apiKey: string;
  fields: Map<number, FakeField>;
  subscribers: FakeSubscriber[];
  /** Subscriber ids whose values Kit refuses (a 422, or a failure row in a bulk answer). */
  refused: Set<string>;
  /** Every answer is a 429, as when the credential's window is used up. */
  rateLimited: boolean;
  /** Every limit is this many times Kit's, for a processor sped up as much (test harnesses). */
  limitScale: number;
}

export interface KitRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  body?: unknown;
  /** How the request authenticated, and as which account. */
  auth: 'apiKey' | 'oauth2';
  accountId: number;
  status?: number;
  /** Epoch ms the request arrived. */
  at: number;
}

/** Requests per 60 s for each credential (Kit's rate limits page). */
export const KIT_LIMITS = { oauth2: 600, apiKey: 120 };
const WINDOW_MS = 60_000;
const LIST_QUERY = new Set([
  'after',
  'before',
  'created_after',
  'created_before',
  'email_address',
  'include_total_count',
  'per_page',
  'sort_field',
  'sort_order',
  'status',
  'updated_after',
  'updated_before',
]);

class KitError extends Error {
  constructor(
    readonly status: number,
    readonly errors: string[],
  ) {
    super(errors.join('; '));
  }
}

const cursorOf = (id: number) => Buffer.from(JSON.stringify([id])).toString('base64');
function idOfCursor(cursor: string): number {
  try {
    const [id] = JSON.parse(Buffer.from(cursor, 'base64').toString('utf8')) as unknown[];
    if (typeof id === 'number') return id;
  } catch {
    // refused below
  }
  throw new KitError(400, ['Invalid cursor']);
}

export class FakeKit {
  readonly accounts = new Map<number, FakeKitAccount>();
  readonly requests: KitRequest[] = [];
  /** Requests that broke Kit's reference or its limits. */
  readonly problems: string[] = [];
  readonly client = {
    id: `kit-client-${randomUUID()}`,
    secret: `kit-secret-${randomBytes(12).toString('hex')}`,
  };
  /** The account the next consent installs the app in (a new one when unset). */
  consentAccount?: FakeKitAccount;
  tokenGrants = 0;
  url = '';
  private readonly codes = new Map<string, { account: FakeKitAccount; redirectUri: string }>();
  private readonly accessTokens = new Map<string, { account: FakeKitAccount; expiresAt: number }>();
  private readonly refreshTokens = new Map<string, FakeKitAccount>();
  private readonly windows = new Map<string, number[]>();
  private nextId = 1001;
  private server?: http.Server;

  async start(): Promise<this> {
    this.server = http.createServer((req, res) => void this.handle(req, res));
    this.url = await listenLocal(this.server);
    return this;
  }

  stop(): Promise<void> {
    return closeServer(this.server!);
  }

  newAccount(): FakeKitAccount {
    const id = this.nextId++;
    const account: FakeKitAccount = {
      id,
      name: `Creator ${id}`,
      apiKey: `kit_${randomBytes(16).toString('hex')}`,
      fields: new Map(),
      subscribers: [],
      refused: new Set(),
      rateLimited: false,
      limitScale: 1,
    };
    this.accounts.set(id, account);
    return account;
  }

  /** `n` active subscribers, ids increasing with gaps (as Kit's); their ids, in order. */
  seed(account: FakeKitAccount, n: number): string[] {
    return Array.from({ length: n }, () => {
      const id = (this.nextId += 1 + (this.nextId % 3));
      account.subscribers.push({ id, email: `reader${id}@example.com`, state: 'active', values: new Map() });
      return String(id);
    });
  }

  fieldByKey(account: FakeKitAccount, key: string): FakeField | undefined {
    return [...account.fields.values()].find((f) => f.key === key);
  }

  valueOf(account: FakeKitAccount, subscriberId: string, key: string): string | undefined {
    const field = this.fieldByKey(account, key);
    const s = account.subscribers.find((x) => String(x.id) === subscriberId);
    return field && s ? s.values.get(field.id) : undefined;
  }

  /** Deletes a field as Kit's DELETE /v4/custom_fields/{id} does: its values go with it. */
  deleteField(account: FakeKitAccount, key: string): void {
    const field = this.fieldByKey(account, key);
    if (!field) return;
    account.fields.delete(field.id);
    for (const s of account.subscribers) s.values.delete(field.id);
  }

  expireAccessTokens(account: FakeKitAccount): void {
    for (const t of this.accessTokens.values()) if (t.account === account) t.expiresAt = 0;
  }

  revokeGrants(account: FakeKitAccount): void {
    for (const [k, t] of this.accessTokens) if (t.account === account) this.accessTokens.delete(k);
    for (const [k, a] of this.refreshTokens) if (a === account) this.refreshTokens.delete(k);
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const text = Buffer.concat(chunks).toString('utf8');
    const url = new URL(req.url ?? '/', 'http://x');
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json; charset=utf-8' });
      res.end(body === undefined ? '' : JSON.stringify(body));
    };
    try {
      if (req.method === 'GET' && url.pathname === '/v4/oauth/authorize') return this.authorize(url, res);
      if (req.method === 'POST' && url.pathname === '/v4/oauth/token')
        return send(200, this.token(req, text));
      const { account, auth, credential } = this.authenticate(req);
      const record: KitRequest = {
        method: req.method ?? 'GET',
        path: url.pathname,
        query: url.searchParams,
        auth,
        accountId: account.id,
        at: Date.now(),
      };
      this.requests.push(record);
      if (account.rateLimited || this.overLimit(account, auth, credential)) {
        record.status = 429;
        res.writeHead(429, { 'content-type': 'text/plain' });
        return void res.end('Retry later');
      }
      let body: unknown;
      if (['POST', 'PUT'].includes(req.method ?? '')) {
        if (!String(req.headers['content-type']).startsWith('application/json')) {
          throw this.refuse(415, 'Content-Type must be application/json');
        }
        try {
          record.body = body = JSON.parse(text);
        } catch {
          throw this.refuse(400, 'The request body is not valid JSON');
        }
      }
      const [status, answer] = this.route(account, auth, req.method ?? 'GET', url, body);
      record.status = status;
      return send(status, answer);
    } catch (err) {
      if (err instanceof TokenError)
        return send(err.status, { error: err.error, error_description: err.description });
      if (err instanceof KitError) return send(err.status, { errors: err.errors });
      send(500, { errors: [String(err)] });
    }
  }

  private route(
    account: FakeKitAccount,
    auth: KitRequest['auth'],
    method: string,
    url: URL,
    body: unknown,
  ): [number, unknown] {
    const route = `${method} ${url.pathname}`;
    if (route === 'GET /v4/account') {
      const a = {
        name: account.name,
        plan_type: 'creator',
        primary_email_address: `owner${account.id}@example.com`,
      };
      return [200, { user: { email: a.primary_email_address }, account: { ...a, id: account.id } }];
    }
    if (route === 'GET /v4/custom_fields') {
      this.onlyQuery(url, ['after', 'before', 'include_total_count', 'per_page']);
      return [
        200,
        this.page(
          [...account.fields.values()].sort((a, b) => a.id - b.id),
          url,
          'custom_fields',
        ),
      ];
    }
    if (route === 'POST /v4/custom_fields') return this.createField(account, body);
    if (route === 'GET /v4/subscribers') {
      this.onlyQuery(url, [...LIST_QUERY]);
      const status = url.searchParams.get('status') ?? 'active';
      if (!['active', 'inactive', 'bounced', 'complained', 'cancelled', 'all'].includes(status)) {
        throw this.refuse(422, `Unknown status ${status}`);
      }
      const sortField = url.searchParams.get('sort_field') ?? 'id';
      const order = url.searchParams.get('sort_order') ?? 'desc';
      if (sortField !== 'id' || !['asc', 'desc'].includes(order))
        throw this.refuse(422, 'this fake sorts by id');
      const all = account.subscribers
        .filter((s) => status === 'all' || s.state === status)
        .sort((a, b) => (order === 'asc' ? a.id - b.id : b.id - a.id))
        .map((s) => this.subscriber(account, s));
      return [200, this.page(all, url, 'subscribers', order === 'asc')];
    }
    const put = /^\/v4\/subscribers\/(\d+)$/.exec(url.pathname);
    if (method === 'PUT' && put) return this.updateSubscriber(account, Number(put[1]), body);
    if (route === 'POST /v4/bulk/custom_fields/subscribers') {
      if (auth !== 'oauth2') throw this.refuse(401, 'This endpoint requires OAuth authentication');
      return this.bulkValues(account, body);
    }
    throw new KitError(404, ['Not Found']);
  }

  private refuse(status: number, message: string): KitError {
    this.problems.push(message);
    return new KitError(status, [message]);
  }

  private onlyQuery(url: URL, allowed: string[]): void {
    for (const k of url.searchParams.keys())
      if (!allowed.includes(k)) throw this.refuse(400, `unknown query parameter ${k}`);
  }

  /** A cursor page of items with ids, `per_page` up to 1,000 (default 500). */
  private page<T extends { id: number }>(items: T[], url: URL, key: string, ascending = true) {
    const perPage = Number(url.searchParams.get('per_page') ?? 500);
    if (!Number.isInteger(perPage) || perPage < 1 || perPage > 1000)
      throw this.refuse(422, 'per_page must be 1 to 1000');
    const after = url.searchParams.get('after');
    const from = after === null ? undefined : idOfCursor(after);
    const rest = from === undefined ? items : items.filter((i) => (ascending ? i.id > from : i.id < from));
    const page = rest.slice(0, perPage);
    return {
      [key]: page,
      pagination: {
        has_previous_page: from !== undefined,
        has_next_page: rest.length > perPage,
        start_cursor: page.length ? cursorOf(page[0]!.id) : null,
        end_cursor: page.length ? cursorOf(page[page.length - 1]!.id) : null,
        per_page: perPage,
      },
    };
  }

  private subscriber(account: FakeKitAccount, s: FakeSubscriber) {
    const fields: Record<string, string | null> = {};
    for (const f of account.fields.values()) fields[f.key] = s.values.get(f.id) ?? null;
    return {
      id: s.id,
      first_name: null,
      email_address: s.email,
      state: s.state,
      created_at: '2026-01-05T10:00:00Z',
      fields,
    };
  }

  private createField(account: FakeKitAccount, body: unknown): [number, unknown] {
    const b = body as { label?: unknown };
    if (typeof b !== 'object' || b === null || Object.keys(b).some((k) => k !== 'label')) {
      throw this.refuse(422, 'The body takes a label only');
    }
    const label = typeof b.label === 'string' ? b.label.trim() : '';
    if (!label) throw this.refuse(422, "Label can't be blank");
    // Kit's key: an ASCII-only, lowercased, underscored form of the label.
    const key = label
      .normalize('NFKD')
      .replace(/[^\x20-\x7e]/g, '')
      .toLowerCase()
      .replace(/[^a-z0-9]+/g, '_')
      .replace(/^_|_$/g, '');
    const existing = [...account.fields.values()].find((f) => f.label === label);
    if (existing) return [200, { custom_field: this.fieldJson(existing) }];
    if (this.fieldByKey(account, key)) throw new KitError(422, ['Key has already been taken']);
    const field = { id: this.nextId++, key, label };
    account.fields.set(field.id, field);
    return [201, { custom_field: this.fieldJson(field) }];
  }

  private fieldJson(f: FakeField) {
    return { id: f.id, name: `ck_field_${f.id}_${f.key}`, key: f.key, label: f.label };
  }

  private updateSubscriber(account: FakeKitAccount, id: number, body: unknown): [number, unknown] {
    const b = body as Record<string, unknown>;
    if (
      typeof b !== 'object' ||
      b === null ||
      Object.keys(b).some((k) => !['email_address', 'first_name', 'fields'].includes(k))
    ) {
      throw this.refuse(422, 'The body takes email_address, first_name and fields');
    }
    const s = account.subscribers.find((x) => x.id === id);
    if (!s) throw new KitError(404, ['Not Found']);
    const fields = (b.fields ?? {}) as Record<string, unknown>;
    if (typeof fields !== 'object' || Array.isArray(fields))
      throw this.refuse(422, 'fields must be an object');
    if (Object.keys(fields).length > 140) throw this.refuse(422, 'at most 140 custom fields at a time');
    if (account.refused.has(String(id))) throw new KitError(422, ['Custom field value is invalid']);
    // Kit ignores fields that do not exist in the account, without an error.
    for (const [key, value] of Object.entries(fields)) {
      const field = this.fieldByKey(account, key);
      if (field && typeof value === 'string') s.values.set(field.id, value);
    }
    return [200, { subscriber: this.subscriber(account, s) }];
  }

  /** Bulk update subscriber custom field values: at once up to 100 rows, queued (202) above. */
  private bulkValues(account: FakeKitAccount, body: unknown): [number, unknown] {
    const b = body as { custom_field_values?: unknown; callback_url?: unknown };
    if (
      typeof b !== 'object' ||
      b === null ||
      Object.keys(b).some((k) => !['custom_field_values', 'callback_url'].includes(k))
    ) {
      throw this.refuse(422, 'The body takes custom_field_values and callback_url');
    }
    if (!('callback_url' in b) || (b.callback_url !== null && typeof b.callback_url !== 'string')) {
      throw this.refuse(422, 'callback_url is required (null or a URL)');
    }
    const rows = b.custom_field_values;
    if (!Array.isArray(rows) || rows.length === 0)
      throw this.refuse(422, 'custom_field_values must be a non-empty array');
    for (const r of rows as Array<Record<string, unknown>>) {
      if (
        typeof r !== 'object' ||
        r === null ||
        Object.keys(r).some((k) => !['subscriber_id', 'subscriber_custom_field_id', 'value'].includes(k)) ||
        !Number.isInteger(r.subscriber_id) ||
        !Number.isInteger(r.subscriber_custom_field_id) ||
        typeof r.value !== 'string'
      ) {
        throw this.refuse(422, 'each row has subscriber_id, subscriber_custom_field_id (integers) and value');
      }
    }
    const written: unknown[] = [];
    const failures: unknown[] = [];
    for (const r of rows as Array<{
      subscriber_id: number;
      subscriber_custom_field_id: number;
      value: string;
    }>) {
      const s = account.subscribers.find((x) => x.id === r.subscriber_id);
      const field = account.fields.get(r.subscriber_custom_field_id);
      const fail = (error: string, row = r) => failures.push({ errors: [error], custom_field_value: row });
      if (!s) fail('Subscriber does not exist', { ...r, subscriber_id: null as unknown as number });
      else if (!field) fail('Custom field does not exist');
      else if (account.refused.has(String(s.id))) fail('Value is invalid');
      else {
        s.values.set(field.id, r.value);
        written.push(r);
      }
    }
    if (rows.length > 100) {
      this.problems.push(
        `a bulk request of ${rows.length} rows was queued: its outcome goes to the callback only`,
      );
      return [202, {}];
    }
    return [200, { custom_field_values: written, failures }];
  }

  private authenticate(req: http.IncomingMessage) {
    const key = req.headers['x-kit-api-key'];
    const bearer = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '')?.[1];
    if (typeof key === 'string') {
      const account = [...this.accounts.values()].find((a) => a.apiKey === key);
      if (account) return { account, auth: 'apiKey' as const, credential: key };
      throw new KitError(401, ['The API key is invalid']);
    }
    const token = bearer ? this.accessTokens.get(bearer) : undefined;
    if (token && token.expiresAt > Date.now())
      return { account: token.account, auth: 'oauth2' as const, credential: bearer! };
    throw new KitError(401, [token ? 'The access token expired' : 'The access token is invalid']);
  }

  /** Kit counts each credential's requests in a 60-second window. */
  private overLimit(account: FakeKitAccount, auth: KitRequest['auth'], credential: string): boolean {
    const now = Date.now();
    const hits = (this.windows.get(credential) ?? []).filter((t) => t > now - WINDOW_MS);
    if (hits.length >= KIT_LIMITS[auth] * account.limitScale) {
      this.problems.push(`rate limit of the ${auth} credential exceeded`);
      this.windows.set(credential, hits);
      return true;
    }
    hits.push(now);
    this.windows.set(credential, hits);
    return false;
  }

  private authorize(url: URL, res: http.ServerResponse): void {
    const q = url.searchParams;
    const redirectUri = q.get('redirect_uri');
    if (q.get('client_id') !== this.client.id || q.get('response_type') !== 'code' || !redirectUri) {
      res.writeHead(400, { 'content-type': 'text/html' });
      return void res.end('<html>The client or redirect URI is not valid</html>');
    }
    const code = randomUUID();
    this.codes.set(code, { account: this.consentAccount ?? this.newAccount(), redirectUri });
    const to = new URL(redirectUri);
    to.searchParams.set('code', code);
    if (q.get('state')) to.searchParams.set('state', q.get('state')!);
    res.writeHead(302, { location: to.toString() });
    res.end();
  }

  /** Kit's token endpoint (JSON or form body); refresh tokens rotate. */
  private token(req: http.IncomingMessage, text: string): Record<string, unknown> {
    const json = String(req.headers['content-type']).startsWith('application/json');
    const form = json
      ? new Map(Object.entries(JSON.parse(text) as Record<string, string>))
      : new Map(new URLSearchParams(text));
    if (form.get('client_id') !== this.client.id || form.get('client_secret') !== this.client.secret) {
      throw this.tokenError(401, 'invalid_client', 'Client authentication failed');
    }
    let account: FakeKitAccount | undefined;
    if (form.get('grant_type') === 'authorization_code') {
      const grant = this.codes.get(form.get('code') ?? '');
      this.codes.delete(form.get('code') ?? '');
      if (!grant || grant.redirectUri !== form.get('redirect_uri')) {
        throw this.tokenError(400, 'invalid_grant', 'The provided authorization grant is invalid');
      }
      account = grant.account;
    } else if (form.get('grant_type') === 'refresh_token') {
      account = this.refreshTokens.get(form.get('refresh_token') ?? '');
      this.refreshTokens.delete(form.get('refresh_token') ?? '');
      if (!account)
        throw this.tokenError(400, 'invalid_grant', 'The provided authorization grant is invalid');
    } else {
      throw this.tokenError(400, 'unsupported_grant_type', 'The authorization grant type is not supported');
    }
    this.tokenGrants++;
    const accessToken = randomBytes(24).toString('base64url');
    const refreshToken = randomBytes(24).toString('base64url');
    this.accessTokens.set(accessToken, { account, expiresAt: Date.now() + 7_200_000 });
    this.refreshTokens.set(refreshToken, account);
    return {
      access_token: accessToken,
      token_type: 'Bearer',
      expires_in: 7200,
      refresh_token: refreshToken,
      scope: 'public',
      created_at: Math.floor(Date.now() / 1000),
    };
  }

  private tokenError(status: number, error: string, description: string): never {
    throw new TokenError(status, error, description);
  }
}

class TokenError extends KitError {
  constructor(
    status: number,
    readonly error: string,
    readonly description: string,
  ) {
    super(status, [description]);
  }
}
