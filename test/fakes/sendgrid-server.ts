// A fake Twilio SendGrid v3 Marketing Campaigns API on 127.0.0.1 for the processor tests: the
// endpoints espresso uses, with SendGrid's paths, auth scheme, error bodies, limits and async jobs.
// Export files and job error files are served from /files/ (in production: signed URLs on another host).
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import { gzipSync } from 'node:zlib';
import type { RecordedRequest } from '../support/openapi';
import { closeServer, listenLocal } from '../support/listen';

/** A contact's identifiers besides its email: an update must repeat each one the contact has. */
export const IDENTIFIERS = ['phone_number_id', 'external_id', 'anonymous_id'] as const;
export type Identifiers = Partial<Record<(typeof IDENTIFIERS)[number], string>>;

export interface FakeContact {
  id: string;
  email: string;
  identifiers: Identifiers;
  /** By field definition id. */
  fields: Map<string, string>;
  created_at: string;
  updated_at: string;
}

interface Job {
  polls: number;
  rows: Array<{ email: string; identifiers: Identifiers; fields: Record<string, string> }>;
  result?: { status: string; results: Record<string, unknown> };
}

interface Export {
  polls: number;
  files: Buffer[];
  created_at: string;
}

export interface RecordedExchange extends RecordedRequest {
  status: number;
  response: unknown;
}

const RESERVED = ['first_name', 'last_name', 'email', 'phone_number', 'external_id', 'contact_id'];
const err = (message: string, field: string | null = null) => ({ errors: [{ field, message }] });

export class FakeSendGrid {
  readonly apiKeys = new Set(['SG.fake-key.0123456789abcdefghijklmnopqrstuvwxyz']);
  private static accounts = 0;
  readonly userId = 4_242_000 + ++FakeSendGrid.accounts;
  readonly username = 'publisher-co';
  readonly fields: Array<{ id: string; name: string; field_type: string }> = [];
  readonly contacts = new Map<string, FakeContact>();
  /** Emails whose upserts the job reports as errored. */
  readonly rejectedEmails = new Set<string>();
  /** Emails the email search does not find yet (SendGrid indexes contacts asynchronously). */
  readonly unindexed = new Set<string>();
  readonly exchanges: RecordedExchange[] = [];
  /** Status polls a job or export stays pending for. */
  pendingPolls = 1;
  /** Contacts per export file (SendGrid splits by max_file_size). */
  exportFileContacts = 100_000;
  rateLimited = false;
  /** Origin of the file links answered (default: the fake's own); and where file links redirect. */
  fileOrigin?: string;
  redirectFilesTo?: string;
  /** Seconds from now to the announced X-RateLimit-Reset. */
  rateLimitResetIn = 5;
  /** Answers to this path are a 200 with a truncated body. */
  malformed?: RegExp;
  /** Called when an upsert job is applied (tests use it to interleave deletions). */
  beforeApply?: () => void;
  url = '';

  private readonly jobs = new Map<string, Job>();
  private readonly exports = new Map<string, Export>();
  private readonly errorFiles = new Map<string, string>();
  private fieldSeq = 0;
  private contactSeq = 0;
  private readonly server = http.createServer((req, res) => void this.handle(req, res));

  async start(): Promise<this> {
    this.url = await listenLocal(this.server);
    return this;
  }

  stop(): Promise<void> {
    return closeServer(this.server);
  }

  // ---- inspection helpers ----

  seed(count: number): string[] {
    return Array.from({ length: count }, () => this.create(`person${++this.contactSeq}@example.com`).id);
  }

  /** A contact with this exact email ('' for a contact known by phone number only) and identifiers. */
  seedEmail(email: string, identifiers: Identifiers = {}): string {
    return this.create(email, identifiers).id;
  }

  field(name: string) {
    return this.fields.find((f) => f.name.toLowerCase() === name.toLowerCase());
  }

  deleteField(name: string): void {
    const f = this.field(name);
    if (!f) return;
    this.fields.splice(this.fields.indexOf(f), 1);
    for (const c of this.contacts.values()) c.fields.delete(f.id);
  }

  valueOf(contactId: string, name: string): string | undefined {
    const f = this.field(name);
    return f && this.contacts.get(contactId)?.fields.get(f.id);
  }

  byEmail(email: string): FakeContact | undefined {
    return [...this.contacts.values()].find((c) => c.email === email.toLowerCase());
  }

  // ---- the API ----

  private create(email: string, identifiers: Identifiers = {}): FakeContact {
    const now = new Date().toISOString();
    const c = {
      id: randomUUID(),
      email: email.toLowerCase(),
      identifiers,
      fields: new Map(),
      created_at: now,
      updated_at: now,
    };
    this.contacts.set(c.id, c);
    return c;
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const raw = Buffer.concat(chunks).toString('utf8');
    const url = new URL(req.url ?? '/', 'http://x');
    const reset = Math.floor(Date.now() / 1000) + this.rateLimitResetIn;
    const limitHeaders = { 'x-ratelimit-limit': '600', 'x-ratelimit-reset': String(reset) };
    const send = (status: number, body?: unknown, headers: Record<string, string> = {}) => {
      if (url.pathname.startsWith('/v3/')) {
        this.exchanges.push({
          method: req.method ?? 'GET',
          url: req.url ?? '/',
          headers: req.headers,
          body: raw ? safeJson(raw) : undefined,
          status,
          response: body,
        });
      }
      const text = body === undefined ? '' : JSON.stringify(body);
      res.writeHead(status, { 'content-type': 'application/json', ...headers });
      res.end(text);
    };

    // Signed download URLs: no API auth; a request carrying an Authorization header is refused
    // (S3 allows one auth mechanism only).
    if (url.pathname.startsWith('/files/')) {
      if (this.redirectFilesTo) {
        res.writeHead(302, { location: `${this.redirectFilesTo}${url.pathname}` });
        return void res.end();
      }
      if (req.headers.authorization) return send(400, { message: 'Only one auth mechanism allowed' });
      const [, , kind, id, index] = url.pathname.split('/');
      if (kind === 'export') {
        const file = this.exports.get(id ?? '')?.files[Number(index)];
        if (!file) return send(404, { message: 'NoSuchKey' });
        res.writeHead(200, { 'content-type': 'application/gzip' });
        return void res.end(file);
      }
      const csv = this.errorFiles.get(id ?? '');
      if (csv === undefined) return send(404, { message: 'NoSuchKey' });
      res.writeHead(200, { 'content-type': 'text/csv' });
      return void res.end(csv);
    }

    const auth = /^Bearer (.+)$/.exec(req.headers.authorization ?? '');
    if (!auth || !this.apiKeys.has(auth[1]!)) return send(401, err('authorization required'));
    if (this.rateLimited) {
      return send(429, err('too many requests'), {
        ...limitHeaders,
        // SendGrid's 429 carries its X-RateLimit-* headers and nothing else (no Retry-After).
        'x-ratelimit-remaining': '0',
      });
    }
    if (this.malformed?.test(url.pathname)) {
      res.writeHead(200, { 'content-type': 'application/json' });
      return void res.end('{"result": [');
    }
    let body: Record<string, unknown> | undefined;
    if (raw) {
      if (!String(req.headers['content-type']).startsWith('application/json')) {
        return send(415, err('content type must be application/json'));
      }
      const parsed = safeJson(raw);
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
        return send(400, err('invalid JSON body'));
      }
      body = parsed as Record<string, unknown>;
    }
    const unknownKeys = (allowed: string[]) => Object.keys(body ?? {}).filter((k) => !allowed.includes(k));
    const ok = (status: number, b: unknown) =>
      send(status, b, { ...limitHeaders, 'x-ratelimit-remaining': '599' });
    const route = `${req.method} ${url.pathname}`;
    let m: RegExpExecArray | null;

    if (route === 'GET /v3/user/username') return ok(200, { username: this.username, user_id: this.userId });

    if (route === 'GET /v3/marketing/field_definitions') {
      return ok(200, {
        custom_fields: this.fields,
        reserved_fields: RESERVED.map((name, i) => ({ id: `_rf${i}_T`, name, field_type: 'Text' })),
        _metadata: { self: `${this.url}/v3/marketing/field_definitions` },
      });
    }

    if (route === 'POST /v3/marketing/field_definitions') {
      const bad = unknownKeys(['name', 'field_type']);
      if (bad.length) return send(400, err(`unknown field ${bad[0]}`, bad[0]));
      const { name, field_type } = body ?? {};
      if (typeof name !== 'string' || !/^[A-Za-z_][A-Za-z0-9_]{0,99}$/.test(name)) {
        return send(400, err('name may only contain letters, numbers and underscores', 'name'));
      }
      if (!['Text', 'Number', 'Date'].includes(String(field_type))) {
        return send(400, err('field_type must be one of Text, Number, Date', 'field_type'));
      }
      if (this.field(name) || RESERVED.includes(name.toLowerCase())) {
        return send(400, err(`field name ${name} already exists`, 'name'));
      }
      const field = {
        id: `e${++this.fieldSeq}_${String(field_type)[0]}`,
        name,
        field_type: String(field_type),
      };
      this.fields.push(field);
      return ok(200, {
        ...field,
        _metadata: { self: `${this.url}/v3/marketing/field_definitions/${field.id}` },
      });
    }

    if (route === 'POST /v3/marketing/contacts/exports') {
      const bad = unknownKeys(['list_ids', 'segment_ids', 'notifications', 'file_type', 'max_file_size']);
      if (bad.length) return send(400, err(`unknown field ${bad[0]}`, bad[0]));
      if (body?.file_type !== undefined && !['csv', 'json'].includes(String(body.file_type))) {
        return send(400, err('file_type must be csv or json', 'file_type'));
      }
      if (body?.file_type !== 'json') return send(400, err('this fake only exports json', 'file_type'));
      const rows = [...this.contacts.values()].map((c) =>
        JSON.stringify({
          contact_id: c.id,
          email: c.email,
          created_at: c.created_at,
          updated_at: c.updated_at,
          custom_fields: Object.fromEntries(
            this.fields.filter((f) => c.fields.has(f.id)).map((f) => [f.name, c.fields.get(f.id)]),
          ),
        }),
      );
      const files: Buffer[] = [];
      for (let i = 0; i < rows.length || i === 0; i += this.exportFileContacts) {
        const part = rows.slice(i, i + this.exportFileContacts);
        files.push(gzipSync(part.length ? part.join('\n') + '\n' : ''));
      }
      const id = randomUUID();
      this.exports.set(id, { polls: 0, files, created_at: new Date().toISOString() });
      return ok(202, { id, _metadata: { self: `${this.url}/v3/marketing/contacts/exports/${id}` } });
    }

    if (req.method === 'GET' && (m = /^\/v3\/marketing\/contacts\/exports\/([^/]+)$/.exec(url.pathname))) {
      const exp = this.exports.get(m[1]!);
      if (!exp) return send(404, err('export not found'));
      const ready = ++exp.polls > this.pendingPolls;
      const now = new Date().toISOString();
      return ok(200, {
        id: m[1],
        status: ready ? 'ready' : 'pending',
        created_at: exp.created_at,
        updated_at: now,
        expires_at: new Date(Date.now() + 72 * 3600_000).toISOString(),
        ...(ready
          ? {
              completed_at: now,
              urls: exp.files.map(
                (_, i) => `${this.fileOrigin ?? this.url}/files/export/${m![1]}/${i}?X-Amz-Signature=abc`,
              ),
              contact_count: this.contacts.size,
            }
          : {}),
      });
    }

    if (route === 'POST /v3/marketing/contacts/batch') {
      const bad = unknownKeys(['ids']);
      if (bad.length) return send(400, err(`unknown field ${bad[0]}`, bad[0]));
      const ids = body?.ids;
      if (!Array.isArray(ids) || ids.some((i) => typeof i !== 'string'))
        return send(400, err('ids is required', 'ids'));
      if (ids.length > 100) return send(400, err('ids may contain at most 100 items', 'ids'));
      const found = ids.flatMap((id: string) => {
        const c = this.contacts.get(id);
        return c ? [this.details(c)] : [];
      });
      if (!found.length) return send(404, err('no contacts found'));
      return ok(200, { result: found });
    }

    if (route === 'POST /v3/marketing/contacts/search/emails') {
      const bad = unknownKeys(['emails']);
      if (bad.length) return send(400, err(`unknown field ${bad[0]}`, bad[0]));
      const emails = body?.emails;
      if (!Array.isArray(emails) || emails.some((e) => typeof e !== 'string')) {
        return send(400, err('emails is required', 'emails'));
      }
      if (emails.length > 100) return send(400, err('emails may contain at most 100 items', 'emails'));
      // Addresses of at most 100 characters; one invalid address refuses the whole search.
      if (emails.some((e: string) => e.length > 100)) {
        return send(400, err('emails may be at most 100 characters long', 'emails'));
      }
      const result: Record<string, unknown> = {};
      for (const e of emails as string[]) {
        const c = this.unindexed.has(e.toLowerCase()) ? undefined : this.byEmail(e);
        result[e.toLowerCase()] = c ? { contact: this.details(c) } : { error: 'contact not found' };
      }
      if (!Object.values(result).some((r) => 'contact' in (r as object)))
        return send(404, err('no contacts found'));
      return ok(200, { result });
    }

    if (route === 'PUT /v3/marketing/contacts') {
      const bad = unknownKeys(['contacts', 'list_ids']);
      if (bad.length) return send(400, err(`unknown field ${bad[0]}`, bad[0]));
      const contacts = body?.contacts;
      if (!Array.isArray(contacts) || contacts.length === 0)
        return send(400, err('contacts is required', 'contacts'));
      if (contacts.length > 30_000)
        return send(400, err('contacts may contain at most 30000 items', 'contacts'));
      if (raw.length > 6 * 1024 * 1024) return send(413, err('request body exceeds 6MB'));
      const errors: Array<{ field: string; message: string }> = [];
      const rows: Job['rows'] = [];
      contacts.forEach((c: unknown, i: number) => {
        const row = (c ?? {}) as Record<string, unknown>;
        const extra = Object.keys(row).filter(
          (k) => !['email', ...IDENTIFIERS, 'custom_fields', 'first_name', 'last_name'].includes(k),
        );
        if (extra.length) errors.push({ field: `contacts[${i}].${extra[0]}`, message: 'unknown field' });
        // SendGrid also takes contacts identified by another identifier alone; this fake keys by email.
        if (typeof row.email !== 'string' || !/^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(row.email)) {
          errors.push({ field: `contacts[${i}].email`, message: 'email is required and must be valid' });
        }
        const identifiers: Identifiers = {};
        for (const k of IDENTIFIERS) {
          if (row[k] === undefined) continue;
          if (typeof row[k] === 'string' && row[k] !== '') identifiers[k] = row[k];
          else errors.push({ field: `contacts[${i}].${k}`, message: 'must be a non-empty string' });
        }
        const fields = (row.custom_fields ?? {}) as Record<string, unknown>;
        for (const [id, v] of Object.entries(fields)) {
          const def = this.fields.find((f) => f.id === id);
          if (!def)
            errors.push({ field: `contacts[${i}].custom_fields.${id}`, message: 'custom field not found' });
          else if (typeof v !== 'string' || v.length > 1000) {
            errors.push({ field: `contacts[${i}].custom_fields.${id}`, message: 'must be a string' });
          }
        }
        rows.push({ email: String(row.email), identifiers, fields: fields as Record<string, string> });
      });
      if (errors.length) return send(400, { errors });
      const id = randomUUID();
      this.jobs.set(id, { polls: 0, rows });
      return ok(202, { job_id: id });
    }

    if (req.method === 'GET' && (m = /^\/v3\/marketing\/contacts\/imports\/([^/]+)$/.exec(url.pathname))) {
      const job = this.jobs.get(m[1]!);
      if (!job) return send(404, err('job not found'));
      const base = { id: m[1], job_type: 'upsert', started_at: new Date().toISOString() };
      if (++job.polls <= this.pendingPolls) return ok(200, { ...base, status: 'pending', results: {} });
      job.result ??= this.apply(m[1]!, job);
      return ok(200, { ...base, ...job.result, finished_at: new Date().toISOString() });
    }

    if (route === 'DELETE /v3/marketing/contacts') {
      const ids = url.searchParams.get('ids');
      if (!ids) return send(400, err('ids or delete_all_contacts is required', 'ids'));
      for (const id of ids.split(',')) this.contacts.delete(id);
      return ok(202, { job_id: randomUUID() });
    }

    return send(404, err('resource not found'));
  }

  /**
   * Applies an upsert job once: existing emails updated, unknown emails CREATED (as SendGrid does).
   * A row that omits an identifier the contact has is an error of the job, not of the request:
   * SendGrid's PUT answers 4xx for validation errors only and processes contacts asynchronously.
   */
  private apply(jobId: string, job: Job): { status: string; results: Record<string, unknown> } {
    this.beforeApply?.();
    let created = 0;
    let updated = 0;
    const errored: Array<{ email: string; reason: string }> = [];
    for (const row of job.rows) {
      if (this.rejectedEmails.has(row.email.toLowerCase())) {
        errored.push({ email: row.email, reason: 'email is on a suppression list, row not imported' });
        continue;
      }
      const existing = this.byEmail(row.email);
      const missing = IDENTIFIERS.filter((k) => existing?.identifiers[k] && !row.identifiers[k]);
      if (missing.length) {
        const reason = `the contact also has ${missing.join(', ')}: an update must include all its identifiers`;
        errored.push({ email: row.email, reason });
        continue;
      }
      const c = existing ?? this.create(row.email, row.identifiers);
      if (existing) updated++;
      else created++;
      for (const [id, v] of Object.entries(row.fields)) c.fields.set(id, v);
      c.updated_at = new Date().toISOString();
    }
    const results: Record<string, unknown> = {
      requested_count: job.rows.length,
      created_count: created,
      updated_count: updated,
      deleted_count: 0,
      errored_count: errored.length,
    };
    if (errored.length) {
      this.errorFiles.set(
        jobId,
        ['email,errors', ...errored.map((e) => `${e.email},"${e.reason}"`)].join('\n'),
      );
      results.errors_url = `${this.fileOrigin ?? this.url}/files/errors/${jobId}`;
    }
    const status =
      errored.length === 0 ? 'completed' : errored.length === job.rows.length ? 'failed' : 'errored';
    return { status, results };
  }

  private details(c: FakeContact) {
    return {
      id: c.id,
      email: c.email,
      ...c.identifiers,
      list_ids: [],
      segment_ids: [],
      created_at: c.created_at,
      updated_at: c.updated_at,
      custom_fields: Object.fromEntries(
        this.fields.filter((f) => c.fields.has(f.id)).map((f) => [f.name, c.fields.get(f.id)]),
      ),
      _metadata: { self: `${this.url}/v3/marketing/contacts/${c.id}` },
    };
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}
