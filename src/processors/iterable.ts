// Iterable (https://api.iterable.com/api/docs). API key only; US or EU data center, found at connect.
// Users are listed through an export job (NDJSON files, read a byte range per page), written with
// POST /api/users/bulkUpdate. See docs/esps/iterable.md for the choices made here.
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { BaseProcessor } from './base-processor';
import type { EspCall, ListingArgs, ProcessorDeps, UpdateArgs } from './base-processor';
import { RequestRejectedError, TransientError } from './errors';
import { readRemoteLines } from './kit/export-pages';
import { withHostFallback, type RegionalHostOptions } from './kit/host-fallback';
import type { JobPollOptions } from './kit/poll';
import { expectShape } from './kit/shape';
import { heldValue, listedContact, redactContactIds } from './kit/values';
import { IterableExportFiles, startUserExport } from './iterable-export';
import type * as P from './types';

/** Defaults: US https://api.iterable.com, EU https://api.eu.iterable.com; job polls from 2 s. */
export interface IterableProcessorOptions extends RegionalHostOptions, JobPollOptions {
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
const channels = z.object({ channels: z.array(z.unknown()) });
const userFields = z.object({ fields: z.record(z.string(), z.unknown()) });
const bulkUpdate = z.object({
  successCount: z.int(),
  failCount: z.int(),
  invalidEmails: z.array(z.unknown()).optional(),
  invalidUserIds: z.array(z.unknown()).optional(),
  filteredOutFields: z.array(z.unknown()).optional(),
  failedUpdates: z.record(z.string(), z.unknown()).optional(),
});

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
  readonly descriptor: P.ProcessorDescriptor = {
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
  private readonly exports: IterableExportFiles;

  constructor(
    deps: ProcessorDeps,
    private readonly options: IterableProcessorOptions = {},
  ) {
    super(deps);
    this.us = options.apiBaseUrl ?? US;
    this.eu = options.euApiBaseUrl ?? EU;
    this.exports = new IterableExportFiles(options.jobPollMs ?? 2_000, options.jobWaitMs ?? 60_000);
  }

  protected baseUrl(target?: Pick<P.ProcessorTarget, 'apiBaseUrl'>): string {
    return target?.apiBaseUrl ?? this.us;
  }

  protected override authHeaders(credentials: P.Credentials): Record<string, string> {
    return { 'Api-Key': credentials.kind === 'apiKey' ? credentials.apiKey : credentials.accessToken };
  }

  /**
   * Keys belong to one project in one data center: try US, then EU on a 401. Iterable has no
   * account endpoint; every project has its own message channels, whose ids are global, so the
   * smallest channel id names the project.
   */
  protected async validateCredentials(call: EspCall, credentials: P.Credentials): Promise<P.AccountInfo> {
    const { result, host } = await withHostFallback(
      { primary: this.us, fallback: this.eu, bothFail: 'fallback' },
      (base) => call({ method: 'GET', url: `${base}/api/channels` }),
    );
    const body = expectShape(channels, result.body, 'Iterable', 'GET /api/channels');
    const ids = body.channels
      .map((c) => (c as { id?: unknown } | null)?.id)
      .filter((id): id is number => Number.isInteger(id));
    const region = host === this.eu ? 'eu' : 'us';
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
      ...(host !== this.us ? { apiBaseUrl: host } : {}),
    };
  }

  /**
   * Iterable has no endpoint that creates a user field: a field joins the project's schema when a
   * user update carries it. An empty string on one dedicated placeholder user adds it as a string.
   */
  protected async ensureField(call: EspCall, target: P.ProcessorTarget): Promise<'exists' | 'created'> {
    const { body: listed } = await call({ method: 'GET', url: '/api/users/getFields' });
    const { fields } = expectShape(userFields, listed, 'Iterable', 'GET /api/users/getFields');
    if (Object.prototype.hasOwnProperty.call(fields, target.fieldName)) return 'exists';
    const { body } = await call<{ code?: string } | undefined>({
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

  protected override startExportJob(call: EspCall, target: P.ProcessorTarget): Promise<string> {
    return startUserExport(call, target.fieldName);
  }

  /**
   * Cursor `jobId:file:byte`. The first page starts a user export job; each page reads the next
   * `pageBytes` of the current file (HTTP Range), whole lines only, and moves to the next file at
   * its end. Nothing is held beyond one page.
   */
  protected async fetchContactPage(...[call, target, cursor, mode]: ListingArgs): Promise<P.ContactPage> {
    const m = /^(\d+):(\d+):(\d+)$/.exec(cursor ?? (await startUserExport(call, target.fieldName)));
    if (!m) throw new RequestRejectedError('not an Iterable listing cursor');
    const [jobId, fileIndex, offset] = [m[1]!, Number(m[2]), Number(m[3])];
    // Job ids are per project and data center: so is the cache of their files.
    const cacheKey = `${this.baseUrl(target)} ${target.espAccountId} ${jobId}`;
    const file = await this.exports.file(call, cacheKey, jobId, fileIndex);
    if (file === 'done') return { contacts: [] };
    if (file === 'pending') return { contacts: [], nextCursor: `${jobId}:${fileIndex}:${offset}` };
    const link = { url: file.url, what: 'the Iterable export file', apiBase: this.baseUrl(target) };
    const { lines, next, end } = await readRemoteLines(
      { ...link, timeoutMs: this.http.timeoutMs, signal: call.signal },
      offset,
      this.options.pageBytes ?? 1 << 20,
      () => this.exports.forget(), // an expired link: fetch fresh ones next time
    );
    const contacts = lines.flatMap((line) => contactOf(line, target.fieldName, mode) ?? []);
    return { contacts, nextCursor: end ? `${jobId}:${fileIndex + 1}:0` : `${jobId}:${fileIndex}:${next}` };
  }

  protected async sendBatch(...[call, target, batch]: UpdateArgs): Promise<P.ContactResult[]> {
    let answer: unknown;
    try {
      ({ body: answer } = await call({
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
      const ids = batch.map((u) => u.contactId.replace(USER_ID_PREFIX, ''));
      throw new RequestRejectedError(redactContactIds(err.message, ids, 3), err.status, err.rows);
    }
    const body = expectShape(bulkUpdate, answer, 'Iterable', 'bulkUpdate');
    if (body.filteredOutFields?.includes(target.fieldName)) {
      return batch.map((u) => ({
        contactId: u.contactId,
        status: 'rejected',
        reason: `Iterable dropped the field ${target.fieldName} (project does not accept new fields)`,
      }));
    }
    const reasons = failureReasons(body);
    const results = batch.map((u): P.ContactResult => {
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

/** Failed row (userId with its prefix, or lower-case email) -> why, from bulkUpdate's answer. */
function failureReasons(body: z.output<typeof bulkUpdate>): Map<string, string> {
  const failed = (body.failedUpdates ?? {}) as Record<string, unknown>;
  const asList = (v: unknown) => (Array.isArray(v) ? (v as unknown[]) : []);
  const lists: Record<string, unknown> = {
    ...failed,
    invalidEmails: [...(body.invalidEmails ?? []), ...asList(failed.invalidEmails)],
    invalidUserIds: [...(body.invalidUserIds ?? []), ...asList(failed.invalidUserIds)],
  };
  const reasons = new Map<string, string>();
  for (const [name, ids] of Object.entries(lists)) {
    const byUserId = name.endsWith('UserIds');
    for (const id of asList(ids)) {
      if (typeof id !== 'string') continue;
      const key = byUserId ? USER_ID_PREFIX + id : id.toLowerCase();
      if (!reasons.has(key)) reasons.set(key, `${name}: ${FAILURES[name] ?? 'not updated'}`);
    }
  }
  return reasons;
}

/** userId when the user has one (never creates a user in email-based projects), else email. */
function identify(contactId: string): { userId: string } | { email: string } {
  return contactId.startsWith(USER_ID_PREFIX)
    ? { userId: contactId.slice(USER_ID_PREFIX.length) }
    : { email: contactId };
}

function contactOf(line: string, field: string, mode: P.ListMode): P.ContactRef | undefined {
  let row: Record<string, unknown>;
  try {
    row = JSON.parse(line) as Record<string, unknown>;
  } catch {
    throw new TransientError('Iterable sent an export line that is not JSON');
  }
  const userId = typeof row.userId === 'string' && row.userId ? row.userId : undefined;
  const email = typeof row.email === 'string' && row.email ? row.email : undefined;
  if (userId === SCHEMA_USER_ID || (!userId && !email)) return undefined;
  return listedContact(userId ? USER_ID_PREFIX + userId : email!, heldValue(row[field]), mode);
}
