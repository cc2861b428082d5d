// A fake Mailchimp: the Marketing API v3 under /{dc}/3.0 (the path prefix stands in for the data
// center host) and the OAuth endpoints of login.mailchimp.com, in memory, for processor tests.
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import type { RecordedRequest } from '../support/openapi';
import { closeServer, listenLocal } from '../support/listen';

export interface FakeMember {
  id: string;
  email_address: string;
  status: string;
  merge_fields: Record<string, string>;
  timestamp_signup: string;
}

export interface FakeList {
  id: string;
  name: string;
  mergeFields: Map<string, { merge_id: number; tag: string; name: string; type: string }>;
  members: FakeMember[];
  byEmail: Map<string, FakeMember>;
  /** Addresses the batch endpoint refuses per row. */
  refused: Set<string>;
  /** Permanently deleted addresses: never re-imported. */
  deleted: Set<string>;
  /** Archived members as they were, for restoring. */
  archivedMembers: Map<string, FakeMember>;
}

export type Recorded = RecordedRequest & { status: number; response: unknown };

const MAX_COUNT = 1000;
/** Mailchimp allows each user 10 simultaneous connections; one more is answered 429. */
const MAX_CONNECTIONS = 10;
const MAX_BATCH = 500;
const MEMBER_KEYS = new Set([
  'email_address',
  'email_type',
  'status',
  'status_if_new',
  'merge_fields',
  'interests',
  'language',
  'vip',
  'location',
  'ip_signup',
  'timestamp_signup',
  'ip_opt',
  'timestamp_opt',
]);

const hash = (email: string) => createHash('md5').update(email.toLowerCase()).digest('hex');
const NO_CONTENT = Symbol('204 No Content');

class Problem extends Error {
  constructor(
    readonly status: number,
    readonly title: string,
    readonly detail: string,
    readonly errors?: Array<{ field: string; message: string }>,
  ) {
    super(detail);
  }
}

export class FakeMailchimp {
  /** Addresses archived (DELETE /lists/{list_id}/members/{subscriber_hash}, or archiveMember). */
  readonly archived: string[] = [];
  /** Called after each page of members is answered: an audience that changes while it is listed. */
  afterMembersPage?: (list: FakeList, offset: number) => void;
  readonly dc = 'us7';
  readonly accountId = `acc${randomBytes(4).toString('hex')}`;
  readonly apiKey = `${randomBytes(16).toString('hex')}-${this.dc}`;
  readonly client = { id: 'client-123', secret: 'client-secret-PLANTED-456' };
  readonly lists = new Map<string, FakeList>();
  readonly requests: Recorded[] = [];
  /** Every API call is answered 429, as when other apps of the user hold all its connections. */
  rateLimited = false;
  /**
   * How long each API answer takes. Mailchimp's take tenths of a second, which is what makes a
   * client's requests overlap there; 0 answers at once.
   */
  answerDelayMs = 0;
  /** The most API requests that were being answered at once. */
  mostInFlight = 0;
  private inFlight = 0;
  /** The next `times` API calls are answered with this instead (malformed bodies, outages). */
  respondWith?: { status: number; type: string; text: string; times: number };
  tokenGrants = 0;
  private readonly tokens = new Map<string, { revoked: boolean }>();
  private readonly codes = new Map<string, string>();
  private server!: http.Server;
  private nextMergeId = 1;
  url = '';

  async start(): Promise<this> {
    this.server = http.createServer((req, res) => void this.handle(req, res));
    this.url = await listenLocal(this.server);
    return this;
  }

  stop(): Promise<void> {
    return closeServer(this.server);
  }

  /** The API's base URL template for the processor (`{dc}` = the key's data center). */
  get apiTemplate(): string {
    return `${this.url}/{dc}/3.0`;
  }

  addList(name: string): FakeList {
    const id = randomBytes(5).toString('hex');
    const list: FakeList = {
      id,
      name,
      mergeFields: new Map(),
      members: [],
      byEmail: new Map(),
      refused: new Set(),
      deleted: new Set(),
      archivedMembers: new Map(),
    };
    this.lists.set(id, list);
    return list;
  }

  /** Adds `n` subscribed members `person<N>@example.com`; returns their addresses. */
  seed(list: FakeList, n: number): string[] {
    const first = list.members.length;
    const emails: string[] = [];
    for (let i = 0; i < n; i++) {
      const email = `person${first + i}@example.com`;
      const member: FakeMember = {
        id: hash(email),
        email_address: email,
        status: 'subscribed',
        merge_fields: {},
        timestamp_signup: new Date(Date.UTC(2024, 0, 1) + (first + i) * 1000).toISOString(),
      };
      list.members.push(member);
      list.byEmail.set(email, member);
      emails.push(email);
    }
    return emails;
  }

  /** Permanently deletes a member (Mailchimp then refuses to re-import the address). */
  deleteMember(list: FakeList, email: string): void {
    const member = list.byEmail.get(email);
    if (!member) return;
    list.members.splice(list.members.indexOf(member), 1);
    list.byEmail.delete(email);
    list.deleted.add(email);
  }

  /** Archives a member: gone from the audience's listings, restorable. */
  archiveMember(list: FakeList, email: string): void {
    const member = list.byEmail.get(email);
    if (!member) return;
    list.members.splice(list.members.indexOf(member), 1);
    list.byEmail.delete(email);
    list.archivedMembers.set(email, member);
    this.archived.push(email);
  }

  /** Restores an archived member as it was (its signup time too, so its place in the listing). */
  restoreMember(list: FakeList, email: string): void {
    const member = list.archivedMembers.get(email);
    if (!member) return;
    list.archivedMembers.delete(email);
    list.members.push(member);
    list.byEmail.set(email, member);
  }

  revokeTokens(): void {
    for (const t of this.tokens.values()) t.revoked = true;
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    // A connection counts from the request's arrival until its answer is sent.
    const api = !req.url?.startsWith('/oauth2/');
    if (api) {
      this.mostInFlight = Math.max(this.mostInFlight, ++this.inFlight);
      res.on('close', () => this.inFlight--);
    }
    const connections = this.inFlight;
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const raw = Buffer.concat(chunks).toString('utf8');
    const url = new URL(req.url ?? '/', this.url);
    const send = (
      status: number,
      body: unknown,
      type = 'application/json',
      extra: Record<string, string> = {},
    ) => {
      res.writeHead(status, { 'content-type': type, ...extra });
      res.end(body === undefined ? '' : JSON.stringify(body));
      return body;
    };
    if (url.pathname.startsWith('/oauth2/')) return this.oauth(req, url, raw, res, send);

    const m = /^\/([a-z]+\d+)(\/3\.0(?:\/.*)?)$/.exec(url.pathname);
    const apiPath = m?.[2] ?? url.pathname;
    const record: Recorded = {
      method: req.method ?? 'GET',
      url: `${apiPath}${url.search}`,
      headers: req.headers,
      status: 0,
      response: undefined,
    };
    this.requests.push(record);
    try {
      let body: unknown;
      if (raw !== '') {
        if (!String(req.headers['content-type']).startsWith('application/json')) {
          throw new Problem(400, 'Invalid Resource', 'The request body must be JSON (application/json).');
        }
        try {
          body = JSON.parse(raw);
        } catch {
          throw new Problem(400, 'JSON Parse Error', 'We encountered an unspecified JSON parsing error.');
        }
        record.body = body;
      }
      if (!m) throw new Problem(404, 'Resource Not Found', 'The requested resource could not be found.');
      this.authenticate(req.headers.authorization, m[1]!);
      // Mailchimp's 429 carries no Retry-After or rate limit header: only the problem body.
      if (this.rateLimited || connections > MAX_CONNECTIONS) {
        throw new Problem(
          429,
          'Too Many Requests',
          `You have exceeded the limit of ${MAX_CONNECTIONS} simultaneous connections.`,
        );
      }
      if (this.answerDelayMs) await new Promise((r) => setTimeout(r, this.answerDelayMs));
      const once = this.respondWith;
      if (once && once.times > 0) {
        once.times--;
        record.status = -once.status; // not a documented answer: left out of the OpenAPI checks
        res.writeHead(once.status, { 'content-type': once.type }).end(once.text);
        return;
      }
      const out = this.api(req.method ?? 'GET', apiPath.slice('/3.0'.length) || '/', url.searchParams, body);
      if (out === NO_CONTENT) {
        record.status = 204;
        res.writeHead(204).end();
        return;
      }
      record.status = 200;
      record.response = send(200, project(out, url.searchParams.get('fields')));
    } catch (err) {
      if (!(err instanceof Problem)) throw err;
      record.status = err.status;
      record.response = send(
        err.status,
        {
          type: 'https://mailchimp.com/developer/marketing/docs/errors/',
          title: err.title,
          status: err.status,
          detail: err.detail,
          instance: randomBytes(8).toString('hex'),
          ...(err.errors && { errors: err.errors }),
        },
        'application/problem+json; charset=utf-8',
      );
    }
  }

  private authenticate(header: string | undefined, dc: string): void {
    const [scheme, value] = (header ?? '').split(' ');
    if (scheme === 'Basic' && value) {
      const key = Buffer.from(value, 'base64').toString('utf8').split(':')[1];
      if (key === this.apiKey && dc === this.dc) return;
    }
    if (scheme === 'Bearer' && value && this.tokens.get(value)?.revoked === false && dc === this.dc) return;
    throw new Problem(
      401,
      'API Key Invalid',
      "Your API key may be invalid, or you've attempted to access the wrong datacenter.",
    );
  }

  private api(method: string, path: string, q: URLSearchParams, body: unknown): unknown {
    const count = Number(q.get('count') ?? 10);
    const offset = Number(q.get('offset') ?? 0);
    if (!(count >= 1 && count <= MAX_COUNT) || !(offset >= 0)) {
      throw new Problem(400, 'Invalid Resource', `count must be between 1 and ${MAX_COUNT}.`);
    }
    if (method === 'GET' && path === '/') {
      return {
        account_id: this.accountId,
        login_id: '1001',
        account_name: 'Example Publisher',
        email: 'owner@example.com',
      };
    }
    if (method === 'GET' && path === '/lists') {
      const all = [...this.lists.values()].map((l) => ({ id: l.id, web_id: 1, name: l.name }));
      return { lists: all.slice(offset, offset + count), total_items: all.length, constraints: {} };
    }
    const archive = /^\/lists\/([^/]+)\/members\/([0-9a-f]{32})$/.exec(path);
    if (method === 'DELETE' && archive) {
      // Archives the member: gone from the audience's listings, restorable in Mailchimp.
      const target = this.lists.get(decodeURIComponent(archive[1]!));
      const member = target?.members.find((mb) => mb.id === archive[2]);
      if (!target || !member)
        throw new Problem(404, 'Resource Not Found', 'The requested resource could not be found.');
      this.archiveMember(target, member.email_address);
      return NO_CONTENT;
    }
    const lm = /^\/lists\/([^/]+)(\/merge-fields|\/members)?$/.exec(path);
    const list = lm && this.lists.get(decodeURIComponent(lm[1]!));
    if (!lm || !list)
      throw new Problem(404, 'Resource Not Found', 'The requested resource could not be found.');
    const sub = lm[2] ?? '';
    if (method === 'GET' && sub === '/merge-fields') {
      const fields = [...list.mergeFields.values()].map((f) => ({ ...f, list_id: list.id }));
      return {
        merge_fields: fields.slice(offset, offset + count),
        list_id: list.id,
        total_items: fields.length,
      };
    }
    if (method === 'POST' && sub === '/merge-fields') return this.createMergeField(list, body);
    if (method === 'GET' && sub === '/members') {
      let members = list.members;
      const sort = q.get('sort_field');
      if (sort && sort !== 'timestamp_signup')
        throw new Problem(400, 'Invalid Resource', 'sort_field unsupported by the fake.');
      if (sort) {
        const dir = q.get('sort_dir') === 'DESC' ? -1 : 1;
        members = [...members].sort((a, b) => dir * a.timestamp_signup.localeCompare(b.timestamp_signup));
      }
      const page = {
        members: members.slice(offset, offset + count).map((mb) => ({ ...mb, list_id: list.id })),
        list_id: list.id,
        total_items: members.length,
      };
      this.afterMembersPage?.(list, offset);
      return page;
    }
    if (method === 'POST' && sub === '') return this.batch(list, body);
    throw new Problem(405, 'Method Not Allowed', 'The requested method and resource are not compatible.');
  }

  private createMergeField(list: FakeList, body: unknown) {
    const b = body as Record<string, unknown>;
    const allowed = [
      'name',
      'tag',
      'type',
      'required',
      'default_value',
      'public',
      'display_order',
      'options',
      'help_text',
    ];
    const unknown = Object.keys(b ?? {}).filter((k) => !allowed.includes(k));
    if (typeof b?.name !== 'string' || typeof b.type !== 'string' || unknown.length) {
      throw new Problem(
        400,
        'Invalid Resource',
        "The resource submitted could not be validated. For field-specific details, see the 'errors' array.",
        [
          {
            field: unknown[0] ?? 'name',
            message: 'Schema describes a merge field with name and type only from the documented properties',
          },
        ],
      );
    }
    const tag = String(b.tag ?? b.name).toUpperCase();
    if (!/^[A-Z0-9_]{1,10}$/.test(tag))
      throw new Problem(400, 'Invalid Resource', 'The merge tag is invalid.');
    if (list.mergeFields.has(tag)) {
      throw new Problem(
        400,
        'Invalid Resource',
        `A Merge Field with the tag "${tag}" already exists for this list.`,
      );
    }
    const field = { merge_id: this.nextMergeId++, tag, name: b.name, type: b.type };
    list.mergeFields.set(tag, field);
    return { ...field, list_id: list.id };
  }

  private batch(list: FakeList, body: unknown) {
    const b = body as { members?: unknown; update_existing?: unknown };
    const invalid = (field: string, message: string) =>
      new Problem(
        400,
        'Invalid Resource',
        "The resource submitted could not be validated. For field-specific details, see the 'errors' array.",
        [{ field, message }],
      );
    const extra = Object.keys(b ?? {}).filter(
      (k) => !['members', 'update_existing', 'sync_tags'].includes(k),
    );
    if (extra.length) throw invalid(extra[0]!, 'Unknown property');
    if (!Array.isArray(b?.members)) throw invalid('members', 'Required property');
    if (b.members.length > MAX_BATCH)
      throw invalid('members', `Schema describes array, maximum ${MAX_BATCH} items`);
    const result = {
      new_members: [] as unknown[],
      updated_members: [] as unknown[],
      errors: [] as unknown[],
    };
    const error = (email: string, message: string, code = 'ERROR_GENERIC') =>
      result.errors.push({ email_address: email, error: message, error_code: code });
    const members = b.members as Array<Record<string, unknown>>;
    for (const [i, raw] of members.entries()) {
      const bad = Object.keys(raw).find((k) => !MEMBER_KEYS.has(k));
      if (bad) throw invalid(`members.${bad}`, 'Unknown property');
      // The current reference: every row carries `status` or `status_if_new`.
      if (typeof raw.status !== 'string' && typeof raw.status_if_new !== 'string')
        throw invalid(`members.${i}.status`, 'Required property: status or status_if_new');
    }
    for (const raw of members) {
      const email = String(raw.email_address ?? '');
      const member = list.byEmail.get(email.toLowerCase());
      const merge = (raw.merge_fields ?? {}) as Record<string, unknown>;
      if (!/^[^@\s]+@[^@\s]+\.[a-z]{2,}$/i.test(email))
        error(email, `${email} looks fake or invalid, please enter a real email address.`);
      else if (list.refused.has(email))
        error(email, `${email} has been compliance blocked and cannot be updated.`);
      else if (list.deleted.has(email)) {
        error(
          email,
          `${email} was permanently deleted and cannot be re-imported. The contact must re-subscribe to get back on the list.`,
        );
      } else if (member) {
        if (b.update_existing !== true) {
          error(
            email,
            `${email} is already a list member, do you want to update? please provide update_existing:true in the request body`,
            'ERROR_CONTACT_EXISTS',
          );
          continue;
        }
        for (const [tag, v] of Object.entries(merge))
          if (list.mergeFields.has(tag)) member.merge_fields[tag] = String(v);
        // `status_if_new` applies to new members only: an existing member's status moves only with `status`.
        if (typeof raw.status === 'string') member.status = raw.status;
        result.updated_members.push({ ...member, list_id: list.id });
      } else {
        const created: FakeMember = {
          id: hash(email),
          email_address: email.toLowerCase(),
          status: String(raw.status ?? raw.status_if_new),
          merge_fields: Object.fromEntries(Object.entries(merge).map(([k, v]) => [k, String(v)])),
          timestamp_signup: new Date().toISOString(),
        };
        list.members.push(created);
        list.byEmail.set(created.email_address, created);
        result.new_members.push({ ...created, list_id: list.id });
      }
    }
    return {
      ...result,
      total_created: result.new_members.length,
      total_updated: result.updated_members.length,
      error_count: result.errors.length,
      _links: [],
    };
  }

  private oauth(
    req: http.IncomingMessage,
    url: URL,
    raw: string,
    res: http.ServerResponse,
    send: (status: number, body: unknown) => unknown,
  ): void {
    if (req.method === 'GET' && url.pathname === '/oauth2/authorize') {
      // The consent is approved at once for the fake's single user.
      const q = url.searchParams;
      if (
        q.get('response_type') !== 'code' ||
        q.get('client_id') !== this.client.id ||
        !q.get('redirect_uri')
      ) {
        send(400, { error: 'invalid_request' });
        return;
      }
      const code = randomBytes(12).toString('hex');
      this.codes.set(code, q.get('redirect_uri')!);
      const to = new URL(q.get('redirect_uri')!);
      to.searchParams.set('code', code);
      if (q.get('state')) to.searchParams.set('state', q.get('state')!);
      res.writeHead(302, { location: to.toString() }).end();
      return;
    }
    if (req.method === 'POST' && url.pathname === '/oauth2/token') {
      if (!String(req.headers['content-type']).startsWith('application/x-www-form-urlencoded')) {
        send(400, { error: 'invalid_request' });
        return;
      }
      const form = new URLSearchParams(raw);
      const code = form.get('code') ?? '';
      if (form.get('client_id') !== this.client.id || form.get('client_secret') !== this.client.secret) {
        send(401, { error: 'invalid_client' });
        return;
      }
      if (
        form.get('grant_type') !== 'authorization_code' ||
        this.codes.get(code) !== form.get('redirect_uri')
      ) {
        send(400, { error: 'invalid_grant' });
        return;
      }
      this.codes.delete(code);
      this.tokenGrants++;
      const token = randomBytes(16).toString('hex');
      this.tokens.set(token, { revoked: false });
      send(200, { access_token: token, expires_in: 0, scope: null });
      return;
    }
    if (req.method === 'GET' && url.pathname === '/oauth2/metadata') {
      const [scheme, token] = (req.headers.authorization ?? '').split(' ');
      if (scheme !== 'OAuth' || this.tokens.get(token ?? '')?.revoked !== false) {
        send(401, { error: 'invalid_token' });
        return;
      }
      send(200, {
        dc: this.dc,
        role: 'owner',
        accountname: 'Example Publisher',
        user_id: 1001,
        login: {
          email: 'owner@example.com',
          login_id: 1001,
          login_name: 'owner',
          login_email: 'owner@example.com',
        },
        login_url: 'https://login.mailchimp.com',
        api_endpoint: `${this.url}/${this.dc}`,
      });
      return;
    }
    send(404, { error: 'not_found' });
  }
}

/** Mailchimp's `fields` parameter: a comma-separated list of dotted paths to keep. */
function project(value: unknown, fields: string | null): unknown {
  if (!fields) return value;
  const pick = (v: unknown, paths: string[][]): unknown => {
    if (Array.isArray(v)) return v.map((x) => pick(x, paths));
    if (typeof v !== 'object' || v === null) return v;
    const out: Record<string, unknown> = {};
    for (const [k, child] of Object.entries(v)) {
      const under = paths.filter((p) => p[0] === k);
      if (!under.length) continue;
      out[k] = under.some((p) => p.length === 1)
        ? child
        : pick(
            child,
            under.map((p) => p.slice(1)),
          );
    }
    return out;
  };
  return pick(
    value,
    fields.split(',').map((f) => f.trim().split('.')),
  );
}
