// Twilio SendGrid Marketing Campaigns (v3 API). API key only. Contacts are listed from a contact
// export (a file on another host, downloaded to a temp file and read page by page by byte offset);
// values are written by the asynchronous, email-keyed upsert, after resolving contact ids to the
// contacts' identifiers (an update must repeat every one), so that a contact deleted since the
// export is rejected rather than re-created.
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { open, readdir, rename, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { createGunzip } from 'node:zlib';
import { BaseProcessor, type EspCall, type ProcessorDeps } from './base-processor';
import { InvalidCredentialsError, RequestRejectedError, TransientError } from './errors';
import { fileLink, refuseRedirect } from './file-links';
import type {
  AccountInfo,
  ContactPage,
  ContactRef,
  ContactResult,
  ContactUpdate,
  ListMode,
  ProcessorDescriptor,
  ProcessorTarget,
} from './types';

export interface SendGridOptions {
  /** API host; default https://api.sendgrid.com. */
  apiBaseUrl?: string;
  /** API host of EU regional subusers, tried when the default host refuses a key; default https://api.eu.sendgrid.com. */
  euApiBaseUrl?: string;
  /** First delay between export/import job status polls; doubles up to 30 s. Default 2 s. */
  jobPollMs?: number;
  /** How long one listPage waits for a pending export before returning an empty page. Default 5 min. */
  exportWaitMs?: number;
  /** How long one batch waits for its upsert job before failing (transient). Default 15 min. */
  importWaitMs?: number;
  /** Where export files are downloaded. Default os.tmpdir(). */
  tmpDir?: string;
  /** Contacts per listed page. Default 1000. */
  pageSize?: number;
}

const DEFAULT_API = 'https://api.sendgrid.com';
const EU_API = 'https://api.eu.sendgrid.com';
/** POST /v3/marketing/contacts/batch and /search/emails take at most 100 ids/emails. */
const LOOKUP_MAX = 100;
/** /search/emails takes addresses of at most 100 characters (the upsert takes 254), else 400s. */
const SEARCH_EMAIL_MAX = 100;
/** What SendGrid identifies a contact by: updating a contact must repeat every one it has. */
const IDENTIFIERS = ['email', 'phone_number_id', 'external_id', 'anonymous_id'] as const;
type Identifiers = Partial<Record<(typeof IDENTIFIERS)[number], string>>;
const DELETED_DURING_UPDATE = 'the contact was deleted in SendGrid during the update';
const CONTACT_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const EXPORT_ID = /^[A-Za-z0-9_-]{1,100}$/;
const FIELD_ID_TTL_MS = 60_000;
const STALE_DOWNLOAD_MS = 3 * 24 * 3600_000;

interface FieldDefinition {
  id: string;
  name: string;
  field_type: string;
}
interface ExportStatus {
  id: string;
  status: string;
  urls?: string[];
  message?: string;
}
interface ImportStatus {
  status: string;
  results?: { created_count?: number; errored_count?: number; errors_url?: string };
}
interface Cursor {
  exportId: string;
  file: number;
  files: number;
  offset: number;
}

export class SendGridProcessor extends BaseProcessor {
  readonly descriptor: ProcessorDescriptor = {
    id: 'sendgrid',
    displayName: 'SendGrid',
    apiKey: { label: 'SendGrid API key' },
    // Each batch costs ceil(n/100) id lookups + 1 upsert + status polls: 1,000 keeps the
    // upsert jobs few while the lookup-to-upsert window stays a couple of seconds.
    maxBatchSize: 1000,
    concurrency: 4,
    // SendGrid publishes no number for these endpoints (only X-RateLimit-* headers; the v2
    // default was 600/min): 5/s stays well under, and 429s are honoured via X-RateLimit-Reset.
    rateLimit: { requests: 5, perMs: 1000 },
    mergeTag: (field) => `{{${field}}}`,
    field: { maxLength: 100, case: 'preserve', allowed: /[A-Za-z0-9_]/ },
  };

  private readonly fieldIds = new Map<string, { id: string; at: number }>();

  constructor(
    deps: ProcessorDeps,
    private readonly options: SendGridOptions = {},
  ) {
    super(deps);
  }

  protected baseUrl(target?: Pick<ProcessorTarget, 'apiBaseUrl'>): string {
    return (target?.apiBaseUrl ?? this.options.apiBaseUrl ?? DEFAULT_API).replace(/\/$/, '');
  }

  /**
   * `GET /v3/user/username` identifies the account. A key the global host refuses is tried on the EU
   * host (EU regional subusers live only there); the configuration then keeps that host.
   */
  protected async validateCredentials(call: EspCall): Promise<AccountInfo> {
    const account = (base?: string) =>
      call<{ user_id?: unknown; username?: unknown }>({
        method: 'GET',
        url: `${base ?? ''}/v3/user/username`,
      });
    let response;
    let apiBaseUrl: string | undefined;
    try {
      response = await account();
    } catch (err) {
      const eu = (this.options.euApiBaseUrl ?? EU_API).replace(/\/$/, '');
      if (!(err instanceof InvalidCredentialsError) || this.baseUrl() === eu) throw err;
      response = await account(eu).catch(() => {
        throw err; // the first refusal says it best
      });
      apiBaseUrl = eu;
    }
    const { body } = response;
    if (!isObject(body) || typeof body.user_id !== 'number' || typeof body.username !== 'string') {
      throw new TransientError('SendGrid answered GET /v3/user/username without user_id and username');
    }
    return {
      accountId: String(body.user_id),
      accountLabel: body.username,
      lists: [],
      ...(apiBaseUrl ? { apiBaseUrl } : {}),
    };
  }

  protected async ensureField(call: EspCall, target: ProcessorTarget): Promise<'exists' | 'created'> {
    if (await this.findField(call, target)) return 'exists';
    try {
      const { body } = await call<FieldDefinition>({
        method: 'POST',
        url: '/v3/marketing/field_definitions',
        json: { name: target.fieldName, field_type: 'Text' },
      });
      if (!isObject(body) || typeof body.id !== 'string') {
        throw new TransientError('SendGrid created the field without returning its id');
      }
      this.fieldIds.set(target.id, { id: body.id, at: Date.now() });
      return 'created';
    } catch (err) {
      // Created by a concurrent run between our read and write ("already exists").
      if (err instanceof RequestRejectedError && (await this.findField(call, target))) return 'exists';
      throw err;
    }
  }

  /** Starts a contacts export job (and clears downloads of jobs nobody reads any more). */
  protected override async startExportJob(call: EspCall): Promise<string> {
    await this.sweepStaleDownloads();
    return formatCursor({ exportId: await this.startExport(call), file: 0, files: 0, offset: 0 });
  }

  protected async listContactsNeedingValue(
    call: EspCall,
    target: ProcessorTarget,
    cursor: string | undefined,
    mode: ListMode,
  ): Promise<ContactPage> {
    if (!cursor) return this.listContactsNeedingValue(call, target, await this.startExportJob(call), mode);
    let at = parseCursor(cursor);
    const path = this.downloadPath(at);
    if (!(await exists(path))) {
      const ready = await this.waitForExport(call, at);
      if (!ready) return { contacts: [], nextCursor: formatCursor(at) };
      at = ready;
      if (at.file >= at.files) return { contacts: [] };
      await download(ready.url, this.downloadPath(at), this.tmpDir(), this.baseUrl(target));
    }
    const { lines, next, eof } = await readLines(path, at.offset, this.options.pageSize ?? 1000);
    const contacts: ContactRef[] = [];
    for (const line of lines) {
      const row = parseExportRow(line, target.fieldName);
      if (!row) {
        await rm(path, { force: true });
        throw new TransientError('the SendGrid export file has a malformed row; it will be downloaded again');
      }
      // The upsert is keyed by email: contacts without one (phone/external id only) cannot be written.
      if (!row.hasEmail) continue;
      if (mode === 'incremental' && row.value) continue;
      contacts.push(row.value ? { contactId: row.id, currentValue: row.value } : { contactId: row.id });
    }
    if (!eof) return { contacts, nextCursor: formatCursor({ ...at, offset: next }) };
    await rm(path, { force: true });
    const more = at.file + 1 < at.files;
    return more
      ? { contacts, nextCursor: formatCursor({ ...at, file: at.file + 1, offset: 0 }) }
      : { contacts };
  }

  protected async updateContacts(
    call: EspCall,
    target: ProcessorTarget,
    batch: ContactUpdate[],
  ): Promise<ContactResult[]> {
    const results: ContactResult[] = [];
    const reject = (contactId: string, reason: string) =>
      results.push({ contactId, status: 'rejected', reason });
    const known = batch.filter((u) => CONTACT_ID.test(u.contactId));
    for (const u of batch)
      if (!CONTACT_ID.test(u.contactId)) reject(u.contactId, 'not a SendGrid contact id');

    // The upsert creates unknown emails: resolve ids first and reject the ones that are gone. The
    // same lookup gives the identifiers besides the email, which the update must repeat.
    const contacts = await this.identifiersOf(
      call,
      known.map((u) => u.contactId),
    );
    const rows: Array<ContactUpdate & { email: string; identifiers: Identifiers }> = [];
    for (const u of known) {
      const identifiers = contacts.get(u.contactId);
      if (identifiers === undefined) reject(u.contactId, 'the contact no longer exists in SendGrid');
      else if (identifiers.email === undefined)
        reject(u.contactId, 'the contact has no email address (SendGrid upserts by email)');
      else rows.push({ ...u, email: identifiers.email, identifiers });
    }
    if (rows.length === 0) return results;

    const fieldId = await this.fieldId(call, target);
    let jobId: string;
    try {
      const { body } = await call<{ job_id?: unknown }>(
        {
          method: 'PUT',
          url: '/v3/marketing/contacts',
          json: {
            contacts: rows.map((r) => ({ ...r.identifiers, custom_fields: { [fieldId]: r.value } })),
          },
        },
        { rowsFromError: rowPointers },
      );
      if (!isObject(body) || typeof body.job_id !== 'string') {
        throw new TransientError('SendGrid accepted the upsert without a job_id');
      }
      jobId = body.job_id;
    } catch (err) {
      if (!(err instanceof RequestRejectedError)) throw err;
      if (!err.rows?.length && !(await this.findField(call, target))) {
        throw new TransientError('the custom field was deleted during the update; it is re-created daily');
      }
      // Pointers index the rows sent; the base class needs them as indexes into `batch`.
      const sent = (err.rows ?? []).map((i) => rows[i]?.contactId);
      const index = new Map(batch.map((u, i) => [u.contactId, i]));
      throw new RequestRejectedError(
        err.message,
        err.status,
        sent.flatMap((id) => (id === undefined ? [] : [index.get(id)!])),
      );
    }

    const job = await this.waitForImport(call, jobId);
    if (job.status === 'failed' && !job.results?.errors_url) {
      throw new RequestRejectedError('SendGrid could not process the upsert job');
    }
    const rowErrors = job.results?.errors_url
      ? await rowErrorsFrom(job.results.errors_url, this.baseUrl(target))
      : new Map();
    const named = rows.filter((r) => rowErrors.has(r.email.toLowerCase())).length;
    if ((job.results?.errored_count ?? 0) > named) {
      throw new TransientError('the SendGrid upsert job reported errors its errors file does not name');
    }
    // Rows the job refused created nothing.
    const written = rows.filter((r) => !rowErrors.has(r.email.toLowerCase()));
    const deleted =
      (job.results?.created_count ?? 0) > 0
        ? await this.undoCreated(call, written)
        : new Map<string, string>();
    for (const r of rows) {
      const error = rowErrors.get(r.email.toLowerCase());
      const gone = deleted.get(r.contactId);
      if (error !== undefined) reject(r.contactId, error || 'SendGrid rejected the row');
      else if (gone !== undefined) reject(r.contactId, gone);
      else results.push({ contactId: r.contactId, status: 'updated' });
    }
    return results;
  }

  // ---- contacts ----

  /** contact id -> the identifiers the contact has; ids SendGrid does not know are absent. */
  private async identifiersOf(call: EspCall, ids: string[]): Promise<Map<string, Identifiers>> {
    const contacts = new Map<string, Identifiers>();
    for (let i = 0; i < ids.length; i += LOOKUP_MAX) {
      let result: unknown;
      try {
        ({
          body: { result },
        } = await call<{ result?: unknown }>({
          method: 'POST',
          url: '/v3/marketing/contacts/batch',
          json: { ids: ids.slice(i, i + LOOKUP_MAX) },
        }));
      } catch (err) {
        // 404: none of these ids exists any more.
        if (err instanceof RequestRejectedError && err.status === 404) continue;
        throw err;
      }
      if (!Array.isArray(result))
        throw new TransientError('SendGrid answered the contact lookup without result');
      for (const c of result as unknown[]) {
        if (!isObject(c) || typeof c.id !== 'string') {
          throw new TransientError('SendGrid answered the contact lookup with a malformed contact');
        }
        contacts.set(c.id, identifiersIn(c));
      }
    }
    return contacts;
  }

  /**
   * The upsert created contacts: some ids were deleted between the lookup and the upsert, which
   * re-created them under new ids. Finds those rows by id, deletes the copies the email search
   * finds, and returns each such row's rejection reason.
   */
  private async undoCreated(
    call: EspCall,
    rows: Array<{ contactId: string; email: string }>,
  ): Promise<Map<string, string>> {
    const present = await this.identifiersOf(
      call,
      rows.map((r) => r.contactId),
    );
    const gone = rows.filter((r) => !present.has(r.contactId));
    // Longer addresses would make the search answer 400 for all of them.
    const searchable = gone.filter((r) => r.email.length <= SEARCH_EMAIL_MAX);
    const found = await this.idsByEmail(
      call,
      searchable.map((r) => r.email),
    );
    const reasons = new Map<string, string>();
    const copies: string[] = [];
    for (const r of gone) {
      const copy = found.get(r.email.toLowerCase());
      if (copy === r.contactId) continue; // the search still finds the contact itself: it was updated
      if (copy !== undefined) {
        copies.push(copy);
        reasons.set(r.contactId, DELETED_DURING_UPDATE);
      } else if (r.email.length > SEARCH_EMAIL_MAX) {
        reasons.set(
          r.contactId,
          `${DELETED_DURING_UPDATE}; the update re-created it and the copy was left, as its email is longer than the ${SEARCH_EMAIL_MAX} characters SendGrid's email search takes`,
        );
      } else {
        reasons.set(
          r.contactId,
          `${DELETED_DURING_UPDATE}; the update may have re-created it, and no copy was found to remove`,
        );
      }
    }
    if (copies.length) {
      await call({ method: 'DELETE', url: '/v3/marketing/contacts', query: { ids: copies.join(',') } });
    }
    return reasons;
  }

  /** email (lower case) -> contact id, for the addresses SendGrid finds. */
  private async idsByEmail(call: EspCall, emails: string[]): Promise<Map<string, string>> {
    const ids = new Map<string, string>();
    for (let i = 0; i < emails.length; i += LOOKUP_MAX) {
      let body: { result?: unknown };
      try {
        ({ body } = await call<{ result?: unknown }>({
          method: 'POST',
          url: '/v3/marketing/contacts/search/emails',
          json: { emails: emails.slice(i, i + LOOKUP_MAX) },
        }));
      } catch (err) {
        // 404: none of these addresses is found.
        if (err instanceof RequestRejectedError && err.status === 404) continue;
        throw err;
      }
      if (!isObject(body) || !isObject(body.result)) {
        throw new TransientError('SendGrid answered the email search without result');
      }
      for (const [email, match] of Object.entries(body.result)) {
        const id = isObject(match) && isObject(match.contact) ? match.contact.id : undefined;
        if (typeof id === 'string') ids.set(email.toLowerCase(), id);
      }
    }
    return ids;
  }

  private async waitForImport(call: EspCall, jobId: string): Promise<ImportStatus> {
    const deadline = Date.now() + (this.options.importWaitMs ?? 15 * 60_000);
    for (let attempt = 0; ; attempt++) {
      await sleep(this.pollDelay(attempt));
      const { body } = await call<ImportStatus>({
        method: 'GET',
        url: `/v3/marketing/contacts/imports/${encodeURIComponent(jobId)}`,
      });
      if (!isObject(body) || typeof body.status !== 'string') {
        throw new TransientError('SendGrid answered the import status without a status');
      }
      if (['completed', 'errored', 'failed'].includes(body.status)) return body;
      if (Date.now() > deadline) throw new TransientError('the SendGrid upsert job is still pending');
    }
  }

  // ---- the custom field ----

  private async findField(call: EspCall, target: ProcessorTarget): Promise<FieldDefinition | undefined> {
    const { body } = await call<{ custom_fields?: unknown }>({
      method: 'GET',
      url: '/v3/marketing/field_definitions',
    });
    if (!isObject(body) || !Array.isArray(body.custom_fields)) {
      throw new TransientError('SendGrid answered the field definitions without custom_fields');
    }
    // Names are unique case-insensitively.
    const name = target.fieldName.toLowerCase();
    const field = (body.custom_fields as FieldDefinition[]).find(
      (f) => isObject(f) && typeof f.name === 'string' && f.name.toLowerCase() === name,
    );
    if (!field) {
      this.fieldIds.delete(target.id);
      return undefined;
    }
    if (field.field_type !== 'Text' || typeof field.id !== 'string') {
      throw new RequestRejectedError(
        `the SendGrid custom field ${field.name} exists with type ${field.field_type}; it must be Text`,
      );
    }
    this.fieldIds.set(target.id, { id: field.id, at: Date.now() });
    return field;
  }

  private async fieldId(call: EspCall, target: ProcessorTarget): Promise<string> {
    const cached = this.fieldIds.get(target.id);
    if (cached && Date.now() - cached.at < FIELD_ID_TTL_MS) return cached.id;
    const field = await this.findField(call, target);
    if (!field) throw new TransientError(`the SendGrid custom field ${target.fieldName} does not exist yet`);
    return field.id;
  }

  // ---- the export ----

  private async startExport(call: EspCall): Promise<string> {
    const { body } = await call<{ id?: unknown }>({
      method: 'POST',
      url: '/v3/marketing/contacts/exports',
      json: { file_type: 'json' },
    });
    if (!isObject(body) || typeof body.id !== 'string' || !EXPORT_ID.test(body.id)) {
      throw new TransientError('SendGrid started the export without a usable id');
    }
    return body.id;
  }

  /** The export's file to download next, or undefined while it is still pending. */
  private async waitForExport(call: EspCall, at: Cursor): Promise<(Cursor & { url: string }) | undefined> {
    const deadline = Date.now() + (this.options.exportWaitMs ?? 5 * 60_000);
    for (let attempt = 0; ; attempt++) {
      const { body } = await call<ExportStatus>({
        method: 'GET',
        url: `/v3/marketing/contacts/exports/${encodeURIComponent(at.exportId)}`,
      });
      if (!isObject(body) || typeof body.status !== 'string') {
        throw new TransientError('SendGrid answered the export status without a status');
      }
      if (body.status === 'ready') {
        const urls = body.urls;
        if (!Array.isArray(urls) || urls.some((u) => typeof u !== 'string')) {
          throw new TransientError('SendGrid answered a ready export without urls');
        }
        if (at.files && urls.length !== at.files) {
          throw new RequestRejectedError('the SendGrid export changed its files; start the listing again');
        }
        return { ...at, files: urls.length, url: urls[at.file] ?? '' };
      }
      if (body.status === 'failure') {
        // Not retried with the same cursor: the next run starts a new export.
        throw new RequestRejectedError(
          `the SendGrid contact export failed: ${body.message ?? 'no reason given'}`,
        );
      }
      if (Date.now() > deadline) return undefined;
      await sleep(this.pollDelay(attempt));
    }
  }

  private pollDelay(attempt: number): number {
    return Math.min(30_000, (this.options.jobPollMs ?? 2_000) * 2 ** attempt);
  }

  private tmpDir(): string {
    return this.options.tmpDir ?? tmpdir();
  }

  private downloadPath(at: Cursor): string {
    const key = createHash('sha256').update(`${at.exportId}:${at.file}`).digest('hex').slice(0, 32);
    return join(this.tmpDir(), `espresso-sendgrid-${key}.ndjson`);
  }

  /** Downloads left behind by crashed workers (a finished file is removed when read). */
  private async sweepStaleDownloads(): Promise<void> {
    const dir = this.tmpDir();
    for (const name of await readdir(dir).catch(() => [] as string[])) {
      if (!name.startsWith('espresso-sendgrid-')) continue;
      const file = join(dir, name);
      const info = await stat(file).catch(() => undefined);
      if (info && Date.now() - info.mtimeMs > STALE_DOWNLOAD_MS) await rm(file, { force: true });
    }
  }
}

// ---- helpers ----

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

function formatCursor(c: Cursor): string {
  return `${c.exportId}~${c.file}~${c.files}~${c.offset}`;
}

function parseCursor(cursor: string): Cursor {
  const m = /^([A-Za-z0-9_-]{1,100})~(\d+)~(\d+)~(\d+)$/.exec(cursor);
  if (!m) throw new RequestRejectedError('not a SendGrid listing cursor');
  return { exportId: m[1]!, file: Number(m[2]), files: Number(m[3]), offset: Number(m[4]) };
}

/** The identifiers a contact has (an empty one counts as absent). */
function identifiersIn(contact: Record<string, unknown>): Identifiers {
  const identifiers: Identifiers = {};
  for (const key of IDENTIFIERS) {
    const v = contact[key];
    if (typeof v === 'string' && v !== '') identifiers[key] = v;
  }
  return identifiers;
}

/** `errors[].field` such as `contacts[3].email` points at a row of the upsert. */
function rowPointers(body: unknown): number[] | undefined {
  if (!isObject(body) || !Array.isArray(body.errors)) return undefined;
  const rows = (body.errors as unknown[]).flatMap((e) => {
    const m = isObject(e) && typeof e.field === 'string' ? /^contacts\[(\d+)\]/.exec(e.field) : null;
    return m ? [Number(m[1])] : [];
  });
  return rows.length ? rows : undefined;
}

/** One line of a JSON export (newline-delimited objects; custom_fields keyed by field name). */
function parseExportRow(
  line: string,
  fieldName: string,
): { id: string; hasEmail: boolean; value?: string } | undefined {
  let row: unknown;
  try {
    row = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (!isObject(row) || typeof row.contact_id !== 'string') return undefined;
  const fields = isObject(row.custom_fields) ? row.custom_fields : {};
  const key =
    fieldName in fields
      ? fieldName
      : Object.keys(fields).find((k) => k.toLowerCase() === fieldName.toLowerCase());
  const value = key === undefined ? undefined : fields[key];
  return {
    id: row.contact_id,
    hasEmail: typeof row.email === 'string' && row.email !== '',
    value: typeof value === 'string' && value !== '' ? value : undefined,
  };
}

/**
 * Downloads a signed export URL (another host: no API key sent) to `dest`, gunzipped when
 * gzipped. Written under a temporary name and renamed, so a partial download is never read.
 */
async function download(url: string, dest: string, dir: string, apiBase: string): Promise<void> {
  const what = 'the SendGrid export file';
  const link = fileLink(url, what, apiBase);
  let res: Response;
  try {
    res = await fetch(link, { redirect: 'manual', signal: AbortSignal.timeout(60 * 60_000) });
  } catch {
    throw new TransientError('the SendGrid export download failed');
  }
  await refuseRedirect(res, what);
  if (!res.ok || !res.body) {
    await res.body?.cancel();
    if (res.status >= 500) throw new TransientError(`the SendGrid export download answered ${res.status}`);
    throw new RequestRejectedError(`the SendGrid export file is not available (${res.status}); start again`);
  }
  const part = join(dir, `espresso-sendgrid-${randomBytes(8).toString('hex')}.part`);
  const plain = `${part}.plain`;
  try {
    await pipeline(
      Readable.fromWeb(res.body as import('node:stream/web').ReadableStream),
      createWriteStream(part),
    );
    const head = Buffer.alloc(2);
    const fh = await open(part, 'r');
    await fh.read(head, 0, 2, 0).finally(() => fh.close());
    if (head[0] === 0x1f && head[1] === 0x8b) {
      await pipeline(createReadStream(part), createGunzip(), createWriteStream(plain));
      await rename(plain, dest);
    } else {
      await rename(part, dest);
    }
  } catch (err) {
    if (err instanceof TransientError) throw err;
    throw new TransientError('the SendGrid export download was cut off or is not valid gzip');
  } finally {
    await rm(part, { force: true });
    await rm(plain, { force: true });
  }
}

/** Up to `max` lines from byte `offset`; `next` is the offset after the last line returned. */
async function readLines(
  path: string,
  offset: number,
  max: number,
): Promise<{ lines: string[]; next: number; eof: boolean }> {
  const fh = await open(path, 'r');
  try {
    const size = (await fh.stat()).size;
    const buf = Buffer.alloc(256 * 1024);
    const lines: string[] = [];
    let pos = offset;
    let next = offset;
    let carry = Buffer.alloc(0);
    while (lines.length < max && pos < size) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
      if (bytesRead === 0) break;
      pos += bytesRead;
      const data = Buffer.concat([carry, buf.subarray(0, bytesRead)]);
      let from = 0;
      for (let nl = data.indexOf(10); lines.length < max && nl !== -1; nl = data.indexOf(10, from)) {
        const line = data.toString('utf8', from, nl).trim();
        if (line) lines.push(line);
        from = nl + 1;
      }
      next += from;
      carry = Buffer.from(data.subarray(from));
    }
    // A last line without a newline.
    if (lines.length < max && pos >= size && carry.length) {
      const line = carry.toString('utf8').trim();
      if (line) lines.push(line);
      next += carry.length;
    }
    return { lines, next, eof: next >= size };
  } finally {
    await fh.close();
  }
}

/** The job's errors file (CSV with a header; an email column and an error column): email -> reason. */
async function rowErrorsFrom(url: string, apiBase: string): Promise<Map<string, string>> {
  const what = 'the SendGrid upsert errors file';
  const link = fileLink(url, what, apiBase);
  let res: Response;
  try {
    res = await fetch(link, { redirect: 'manual', signal: AbortSignal.timeout(120_000) });
  } catch {
    throw new TransientError('the SendGrid upsert errors file could not be downloaded');
  }
  await refuseRedirect(res, what);
  let text: string;
  try {
    if (!res.ok) throw new Error(String(res.status));
    text = await res.text();
  } catch {
    throw new TransientError('the SendGrid upsert errors file could not be downloaded');
  }
  const [header, ...rows] = parseCsv(text);
  const emailCol = header?.findIndex((h) => /e-?mail/i.test(h)) ?? -1;
  const errorCol = header?.findIndex((h) => /error|reason|message/i.test(h)) ?? -1;
  if (emailCol < 0) throw new TransientError('the SendGrid upsert errors file has no email column');
  const errors = new Map<string, string>();
  for (const row of rows) {
    const email = row[emailCol]?.trim().toLowerCase();
    if (email) errors.set(email, errorCol >= 0 ? (row[errorCol] ?? '').trim() : '');
  }
  return errors;
}

function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let cell = '';
  let quoted = false;
  const endRow = () => {
    row.push(cell);
    if (row.some((v) => v !== '')) rows.push(row);
    row = [];
    cell = '';
  };
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quoted && c === '"' && text[i + 1] === '"') {
      cell += '"';
      i++;
    } else if (c === '"') {
      quoted = !quoted;
    } else if (quoted) {
      cell += c;
    } else if (c === ',') {
      row.push(cell);
      cell = '';
    } else if (c === '\n') {
      endRow();
    } else if (c !== '\r') {
      cell += c;
    }
  }
  endRow();
  return rows;
}
