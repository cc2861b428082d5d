// Iterable (https://api.iterable.com/api/docs). API key only; US or EU data center, found at connect.
// Users are listed through an export job (NDJSON files, read a byte range per page), written with
// POST /api/users/bulkUpdate. See docs/esps/iterable.md for the choices made here.
import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { BaseProcessor, type EspCall, type ProcessorDeps } from './base-processor';
import { InvalidCredentialsError, RequestRejectedError, TransientError } from './errors';
import { fileLink, refuseRedirect } from './file-links';
import type {
  AccountInfo,
  ContactPage,
  ContactRef,
  ContactResult,
  ContactUpdate,
  Credentials,
  ListMode,
  ProcessorDescriptor,
  ProcessorTarget,
} from './types';

export interface IterableProcessorOptions {
  /** US data center (default https://api.iterable.com). */
  apiBaseUrl?: string;
  /** EU data center (default https://api.eu.iterable.com). */
  euApiBaseUrl?: string;
  /** First delay while waiting for the export job's files; doubles up to 30 s. Default 2 s. */
  jobPollMs?: number;
  /** How long one listPage waits for the export before returning an empty page. Default 60 s. */
  jobWaitMs?: number;
  /** Bytes of export file read per page. Default 1 MiB. */
  pageBytes?: number;
}

const US = 'https://api.iterable.com';
const EU = 'https://api.eu.iterable.com';
/** contactIds of users written by userId; anything else is an email address. */
const USER_ID_PREFIX = 'uid:';
/** The user ensureField writes an empty value to, so Iterable adds the field to the project's schema. */
export const SCHEMA_USER_ID = 'espresso-field-schema';
/** File download links expire after 30 minutes: refresh the list before that. */
const FILES_TTL_MS = 20 * 60_000;

interface ExportFiles {
  exportTruncated: boolean;
  files: Array<{ file: string; url: string }>;
  jobId: number;
  jobState: 'Enqueued' | 'Running' | 'Completed' | 'Failed';
}

interface BulkUpdateResponse {
  successCount: number;
  failCount: number;
  invalidEmails?: string[];
  invalidUserIds?: string[];
  filteredOutFields?: string[];
  failedUpdates?: Record<string, string[] | undefined>;
}

/** Why a row failed, by the bulkUpdate response array it is in. */
const FAILURES: Record<string, string> = {
  invalidEmails: 'invalid email address',
  invalidUserIds: 'invalid or unknown userId',
  invalidDataEmails: 'invalid data for this user',
  invalidDataUserIds: 'invalid data for this user',
  forgottenEmails: 'user is GDPR-forgotten',
  forgottenUserIds: 'user is GDPR-forgotten',
  conflictEmails: 'email conflict',
  conflictUserIds: 'userId conflict',
  notFoundEmails: 'user not found',
  notFoundUserIds: 'user not found',
};

export class IterableProcessor extends BaseProcessor {
  readonly descriptor: ProcessorDescriptor = {
    id: 'iterable',
    displayName: 'Iterable',
    apiKey: { label: 'Iterable server-side API key' },
    // bulkUpdate caps the body at 4 MB; 1,000 users stay far below it even with 254-char emails.
    maxBatchSize: 1_000,
    // bulkUpdate: 5 requests/second per project.
    concurrency: 4,
    rateLimit: { requests: 4, perMs: 1_000 },
    // Export start and export files: 1 request/second each per organization. espresso knows projects
    // only, so it paces both together per project (docs/esps/iterable.md: several projects).
    limits: { exports: { requests: 1, perMs: 1_000, for: 'listing' } },
    mergeTag: (field) => `{{${field}}}`,
    field: { maxLength: 64, case: 'preserve', allowed: /[A-Za-z0-9_]/ },
  };

  private readonly us: string;
  private readonly eu: string;
  private readonly files = new Map<string, { at: number; body: ExportFiles }>();

  constructor(
    deps: ProcessorDeps,
    private readonly options: IterableProcessorOptions = {},
  ) {
    super(deps);
    this.us = options.apiBaseUrl ?? US;
    this.eu = options.euApiBaseUrl ?? EU;
  }

  protected baseUrl(target?: Pick<ProcessorTarget, 'apiBaseUrl'>): string {
    return target?.apiBaseUrl ?? this.us;
  }

  protected override authHeaders(credentials: Credentials): Record<string, string> {
    return { 'Api-Key': credentials.kind === 'apiKey' ? credentials.apiKey : credentials.accessToken };
  }

  /**
   * Keys belong to one project in one data center: try US, then EU on a 401. Iterable has no
   * account endpoint; every project has its own message channels, whose ids are global, so the
   * smallest channel id names the project.
   */
  protected async validateCredentials(call: EspCall, credentials: Credentials): Promise<AccountInfo> {
    let base = this.us;
    let body: { channels?: Array<{ id?: unknown }> };
    try {
      body = (await call<typeof body>({ method: 'GET', url: `${this.us}/api/channels` })).body;
    } catch (err) {
      if (!(err instanceof InvalidCredentialsError)) throw err;
      base = this.eu;
      body = (await call<typeof body>({ method: 'GET', url: `${this.eu}/api/channels` })).body;
    }
    if (!Array.isArray(body?.channels))
      throw new TransientError('Iterable sent channels in an unknown shape');
    const ids = body.channels.map((c) => c?.id).filter((id): id is number => Number.isInteger(id));
    const region = base === this.eu ? 'eu' : 'us';
    const accountId = ids.length
      ? `${region}-${Math.min(...ids)}`
      : // No channels (never seen): a one-way digest of the key, stable for this key.
        `${region}-key-${createHash('sha256')
          .update(credentials.kind === 'apiKey' ? credentials.apiKey : '')
          .digest('hex')
          .slice(0, 16)}`;
    return {
      accountId,
      accountLabel: `Iterable project ${accountId} (${region.toUpperCase()})`,
      lists: [],
      ...(base !== this.us ? { apiBaseUrl: base } : {}),
    };
  }

  /**
   * Iterable has no endpoint that creates a user field: a field joins the project's schema when a
   * user update carries it. An empty string on one dedicated placeholder user adds it as a string.
   */
  protected async ensureField(call: EspCall, target: ProcessorTarget): Promise<'exists' | 'created'> {
    if (await this.fieldListed(call, target.fieldName)) return 'exists';
    const { body } = await call<{ code?: string; msg?: string }>({
      method: 'POST',
      url: '/api/users/update',
      json: {
        userId: SCHEMA_USER_ID,
        preferUserId: true,
        createNewFields: true,
        dataFields: { [target.fieldName]: '' },
      },
    });
    if (body?.code !== 'Success') {
      throw new RequestRejectedError(`Iterable did not add the field: ${body?.code ?? 'no code'}`);
    }
    return 'created';
  }

  private async fieldListed(call: EspCall, name: string): Promise<boolean> {
    const { body } = await call<{ fields?: Record<string, unknown> }>({
      method: 'GET',
      url: '/api/users/getFields',
    });
    if (typeof body?.fields !== 'object' || body.fields === null) {
      throw new TransientError('Iterable sent user fields in an unknown shape');
    }
    return Object.prototype.hasOwnProperty.call(body.fields, name);
  }

  /** Starts a user export job: its cursor `jobId:0:0` reads it from the start. */
  protected override async startExportJob(call: EspCall, target: ProcessorTarget): Promise<string> {
    const { body } = await call<{ jobId?: unknown }>(
      {
        method: 'POST',
        url: '/api/export/start',
        json: {
          dataTypeName: 'user',
          outputFormat: 'application/x-json-stream',
          onlyFields: ['email', 'userId', target.fieldName].join(','),
        },
      },
      { limit: 'exports' },
    );
    if (!Number.isInteger(body?.jobId))
      throw new TransientError('Iterable started an export without a jobId');
    return `${String(body.jobId)}:0:0`;
  }

  /**
   * Cursor `jobId:file:byte`. The first page starts a user export job; each page reads the next
   * `pageBytes` of the current file (HTTP Range), whole lines only, and moves to the next file at
   * its end. Nothing is held beyond one page.
   */
  protected async listContactsNeedingValue(
    call: EspCall,
    target: ProcessorTarget,
    cursor: string | undefined,
    mode: ListMode,
  ): Promise<ContactPage> {
    if (!cursor)
      return this.listContactsNeedingValue(call, target, await this.startExportJob(call, target), mode);
    const m = /^(\d+):(\d+):(\d+)$/.exec(cursor);
    if (!m) throw new RequestRejectedError('not an Iterable listing cursor');
    const [jobId, fileIndex, offset] = [m[1]!, Number(m[2]), Number(m[3])];
    // Job ids are per project and data center: so is the cache of their files.
    const file = await this.exportFile(
      call,
      `${this.baseUrl(target)} ${target.espAccountId} ${jobId}`,
      jobId,
      fileIndex,
    );
    if (file === 'done') return { contacts: [] };
    if (file === 'pending') return { contacts: [], nextCursor: `${jobId}:${fileIndex}:${offset}` };
    const { lines, next, end } = await this.readLines(file.url, offset, this.baseUrl(target));
    const contacts: ContactRef[] = [];
    for (const line of lines) {
      const contact = contactOf(line, target.fieldName, mode);
      if (contact) contacts.push(contact);
    }
    return { contacts, nextCursor: end ? `${jobId}:${fileIndex + 1}:0` : `${jobId}:${fileIndex}:${next}` };
  }

  /** The job's file at `index`, once the job has written it; polls with backoff for a while. */
  private async exportFile(
    call: EspCall,
    cacheKey: string,
    jobId: string,
    index: number,
  ): Promise<{ file: string; url: string } | 'pending' | 'done'> {
    const deadline = Date.now() + (this.options.jobWaitMs ?? 60_000);
    let delay = this.options.jobPollMs ?? 2_000;
    for (;;) {
      const cached = this.files.get(cacheKey);
      const fresh = cached && Date.now() - cached.at < FILES_TTL_MS ? cached.body : undefined;
      if (fresh?.files[index]) return fresh.files[index];
      if (fresh?.jobState.toLowerCase() === 'completed') return 'done';
      const body = await this.listFiles(call, cacheKey, jobId);
      if (body.files[index]) return body.files[index];
      const state = String(body.jobState).toLowerCase();
      if (state === 'completed') return 'done';
      if (state !== 'enqueued' && state !== 'running') {
        throw new TransientError(
          `Iterable export job ${jobId} ended as ${String(body.jobState).slice(0, 40)}`,
        );
      }
      if (Date.now() + delay > deadline) return 'pending';
      await sleep(delay);
      delay = Math.min(delay * 2, 30_000);
    }
  }

  private async listFiles(call: EspCall, cacheKey: string, jobId: string): Promise<ExportFiles> {
    const all: ExportFiles = {
      exportTruncated: false,
      files: [],
      jobId: Number(jobId),
      jobState: 'Enqueued',
    };
    let startAfter: string | undefined;
    for (;;) {
      // Every page and every poll counts against the 1/s limit.
      const { body } = await call<ExportFiles>(
        { method: 'GET', url: `/api/export/${jobId}/files`, query: { startAfter } },
        { limit: 'exports' },
      );
      if (!Array.isArray(body?.files) || typeof body.jobState !== 'string') {
        throw new TransientError('Iterable sent export files in an unknown shape');
      }
      all.files.push(...body.files);
      all.jobState = body.jobState;
      all.exportTruncated ||= body.exportTruncated === true;
      if (body.files.length === 0 || body.jobState.toLowerCase() !== 'completed') break;
      startAfter = body.files[body.files.length - 1]!.file;
    }
    if (all.exportTruncated)
      throw new RequestRejectedError('Iterable truncated the user export (over 100 GB)');
    this.files.set(cacheKey, { at: Date.now(), body: all });
    for (const key of [...this.files.keys()].slice(0, -8)) this.files.delete(key);
    return all;
  }

  /** Whole lines from `offset` on, about pageBytes of them; `end` when the file is finished. */
  private async readLines(
    url: string,
    offset: number,
    apiBase: string,
  ): Promise<{ lines: string[]; next: number; end: boolean }> {
    const what = 'the Iterable export file';
    const link = fileLink(url, what, apiBase);
    const want = this.options.pageBytes ?? 1 << 20;
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), this.http.timeoutMs);
    try {
      // A pre-signed file link, not the API: no key, no pacing.
      const res = await fetch(link, {
        headers: { range: `bytes=${offset}-${offset + want - 1}` },
        redirect: 'manual',
        signal: controller.signal,
      });
      await refuseRedirect(res, what);
      if (res.status === 416) return { lines: [], next: offset, end: true };
      if (res.status !== 200 && res.status !== 206) {
        this.files.clear(); // an expired link: fetch fresh ones next time
        throw new TransientError(`Iterable export file answered ${res.status}`);
      }
      const buf = await readRange(res, res.status === 200 ? offset : 0, want);
      const total =
        res.status === 206 ? Number(/\/(\d+)$/.exec(res.headers.get('content-range') ?? '')?.[1]) : NaN;
      const atEnd = buf.length < want || (Number.isFinite(total) && offset + buf.length >= total);
      const cut = atEnd ? buf.length : buf.lastIndexOf(0x0a) + 1;
      if (cut === 0) throw new TransientError('an Iterable export line is longer than one page');
      const lines = buf
        .subarray(0, cut)
        .toString('utf8')
        .split('\n')
        .filter((l) => l.trim() !== '');
      return { lines, next: offset + cut, end: atEnd };
    } catch (err) {
      if (err instanceof TransientError || err instanceof RequestRejectedError) throw err;
      throw new TransientError(`Iterable export file download failed (${(err as Error).name})`);
    } finally {
      clearTimeout(timer);
      controller.abort();
    }
  }

  protected async updateContacts(
    call: EspCall,
    target: ProcessorTarget,
    batch: ContactUpdate[],
  ): Promise<ContactResult[]> {
    let body: BulkUpdateResponse;
    try {
      ({ body } = await call<BulkUpdateResponse>({
        method: 'POST',
        url: '/api/users/bulkUpdate',
        json: {
          users: batch.map((u) => ({
            ...identify(u.contactId),
            dataFields: { [target.fieldName]: u.value },
          })),
        },
      }));
    } catch (err) {
      // Whole-batch rejections may quote a userId: contact ids never go into messages.
      if (!(err instanceof RequestRejectedError)) throw err;
      let message = err.message;
      for (const u of batch) {
        const id = u.contactId.replace(USER_ID_PREFIX, '');
        if (id.length >= 3) message = message.split(id).join('[contact]');
      }
      throw new RequestRejectedError(message, err.status, err.rows);
    }
    if (!Number.isInteger(body?.successCount) || !Number.isInteger(body?.failCount)) {
      throw new TransientError('Iterable answered bulkUpdate in an unknown shape');
    }
    if (body.filteredOutFields?.includes(target.fieldName)) {
      return batch.map((u) => ({
        contactId: u.contactId,
        status: 'rejected',
        reason: `Iterable dropped the field ${target.fieldName} (project does not accept new fields)`,
      }));
    }
    const reasons = new Map<string, string>();
    const lists: Record<string, unknown> = {
      ...body.failedUpdates,
      invalidEmails: [...(body.invalidEmails ?? []), ...(body.failedUpdates?.invalidEmails ?? [])],
      invalidUserIds: [...(body.invalidUserIds ?? []), ...(body.failedUpdates?.invalidUserIds ?? [])],
    };
    for (const [name, ids] of Object.entries(lists)) {
      if (!Array.isArray(ids)) continue;
      const byUserId = name.endsWith('UserIds');
      for (const id of ids) {
        if (typeof id !== 'string') continue;
        const key = byUserId ? USER_ID_PREFIX + id : id.toLowerCase();
        if (!reasons.has(key)) reasons.set(key, `${name}: ${FAILURES[name] ?? 'not updated'}`);
      }
    }
    const results = batch.map((u): ContactResult => {
      const key = u.contactId.startsWith(USER_ID_PREFIX) ? u.contactId : u.contactId.toLowerCase();
      const reason = reasons.get(key);
      return reason
        ? { contactId: u.contactId, status: 'rejected', reason }
        : { contactId: u.contactId, status: 'updated' };
    });
    const rejected = results.filter((r) => r.status === 'rejected').length;
    if (rejected !== body.failCount || results.length - rejected !== body.successCount) {
      throw new TransientError(
        `Iterable reported ${body.successCount} updated and ${body.failCount} failed, espresso matched ${rejected} failed of ${batch.length}`,
      );
    }
    return results;
  }
}

/** userId when the user has one (never creates a user in email-based projects), else email. */
function identify(contactId: string): { userId: string } | { email: string } {
  return contactId.startsWith(USER_ID_PREFIX)
    ? { userId: contactId.slice(USER_ID_PREFIX.length) }
    : { email: contactId };
}

function contactOf(line: string, field: string, mode: ListMode): ContactRef | undefined {
  let row: Record<string, unknown>;
  try {
    row = JSON.parse(line) as Record<string, unknown>;
  } catch {
    throw new TransientError('Iterable sent an export line that is not JSON');
  }
  const userId = typeof row.userId === 'string' && row.userId ? row.userId : undefined;
  const email = typeof row.email === 'string' && row.email ? row.email : undefined;
  if (userId === SCHEMA_USER_ID || (!userId && !email)) return undefined;
  const contactId = userId ? USER_ID_PREFIX + userId : email!;
  // Any value a user holds is its value (kept, never replaced), whatever its form.
  const raw = row[field];
  const value = raw === undefined || raw === null || String(raw).trim() === '' ? undefined : String(raw);
  if (mode === 'incremental') return value === undefined ? { contactId } : undefined;
  return value === undefined ? { contactId } : { contactId, currentValue: value };
}

/** Up to `want` bytes after skipping `skip` (when the server ignored the Range header). */
async function readRange(res: Response, skip: number, want: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let have = 0;
  let skipped = 0;
  const reader = res.body!.getReader();
  try {
    while (have < want) {
      const { done, value } = await reader.read();
      if (done) break;
      let chunk = Buffer.from(value);
      if (skipped < skip) {
        const drop = Math.min(skip - skipped, chunk.length);
        skipped += drop;
        chunk = chunk.subarray(drop);
      }
      if (chunk.length) {
        chunks.push(chunk.subarray(0, want - have));
        have += Math.min(chunk.length, want - have);
      }
    }
  } finally {
    await reader.cancel().catch(() => undefined);
  }
  return Buffer.concat(chunks);
}
