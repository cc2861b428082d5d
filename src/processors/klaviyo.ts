// Klaviyo: private API key, JSON:API, profile custom property written by bulk import jobs.
// See docs/esps/klaviyo.md for the vendor facts and where espresso differs.
import { setTimeout as sleep } from 'node:timers/promises';
import { BaseProcessor, type EspCall, type ProcessorDeps } from './base-processor';
import { RateLimitedError, TransientError } from './errors';
import type {
  AccountInfo,
  ContactPage,
  ContactResult,
  ContactUpdate,
  Credentials,
  ListMode,
  ProcessorDescriptor,
  ProcessorTarget,
} from './types';

export interface KlaviyoOptions {
  /** Default https://a.klaviyo.com (Klaviyo has one API host for every account). */
  apiBaseUrl?: string;
  /** First delay before polling an import job; doubled up to 30 s. Default 2 s. */
  jobPollMs?: number;
  /** Give up on a job (TransientError: the batch is retried) after this long. Default 20 min. */
  jobTimeoutMs?: number;
}

/** The API revision espresso is written against (a GA revision; sent on every request). */
export const KLAVIYO_REVISION = '2026-07-15';
/** The profile that carries espresso's declared properties (no email or phone: never messaged). */
export const KLAVIYO_MARKER_EXTERNAL_ID = 'espresso-field-marker';
// Not a valid espresso value (spaces), so it can never pass for a subscriber's ID.
const MARKER_VALUE = 'declared by espresso';
const JSON_API = 'application/vnd.api+json';
const PAGE_SIZE = 100;
/** Bulk import endpoints: 10/s burst, 150/min steady per account. espresso: 2/s (120/min). */
const JOB_RATE = { requests: 2, perMs: 1000 };
const MAX_POLL_MS = 30_000;
const ROW_POINTER = /^\/data\/attributes\/profiles\/data\/(\d+)(?:\/|$)/;

interface Profile {
  type: 'profile';
  id: string;
  attributes?: { external_id?: string | null; properties?: Record<string, unknown> | null };
}
interface Collection<T> {
  data: T[];
  links?: { next?: string | null };
}
interface Job {
  data: {
    id: string;
    attributes: { status: string; total_count?: number; failed_count?: number | null };
  };
}
interface ImportError {
  attributes: {
    code?: string;
    title?: string;
    detail?: string;
    source?: { pointer?: string | null };
    original_payload?: { id?: unknown } | null;
  };
}

export class KlaviyoProcessor extends BaseProcessor {
  readonly descriptor: ProcessorDescriptor = {
    id: 'klaviyo',
    displayName: 'Klaviyo',
    apiKey: { label: 'Klaviyo private API key' },
    // Bulk import: 10,000 profiles and 5 MB per job; an espresso row is ~110 bytes.
    maxBatchSize: 10_000,
    concurrency: 4,
    // Get Profiles: 75/s burst, 750/min steady. espresso: 10/s (600/min).
    rateLimit: { requests: 10, perMs: 1000 },
    limits: { jobs: JOB_RATE },
    mergeTag: (field) => `{{ person|lookup:'${field}' }}`,
    // Klaviyo accepts almost any property name; espresso keeps to names every template syntax reads.
    field: { maxLength: 64, case: 'preserve', allowed: /[A-Za-z0-9_]/ },
  };

  constructor(
    deps: ProcessorDeps,
    private readonly options: KlaviyoOptions = {},
  ) {
    super(deps);
  }

  protected baseUrl(target?: Pick<ProcessorTarget, 'apiBaseUrl'>): string {
    return target?.apiBaseUrl ?? this.options.apiBaseUrl ?? 'https://a.klaviyo.com';
  }

  protected override authHeaders(credentials: Credentials): Record<string, string> {
    const key = credentials.kind === 'apiKey' ? credentials.apiKey : credentials.accessToken;
    return { authorization: `Klaviyo-API-Key ${key}`, revision: KLAVIYO_REVISION, accept: JSON_API };
  }

  /** GET /api/accounts (1/s, 15/min): once per connection and per daily maintenance. */
  protected async validateCredentials(call: EspCall): Promise<AccountInfo> {
    const { body } = await call<Collection<{ id: string; attributes?: AccountAttributes }>>({
      method: 'GET',
      url: '/api/accounts',
      query: { 'fields[account]': 'contact_information.organization_name' },
    });
    const account = Array.isArray(body?.data) ? body.data[0] : undefined;
    if (typeof account?.id !== 'string' || !account.id) throw malformed('accounts');
    const name = account.attributes?.contact_information?.organization_name;
    return { accountId: account.id, accountLabel: name || `Klaviyo account ${account.id}`, lists: [] };
  }

  /**
   * Klaviyo has no property definitions: a property exists while some profile carries it. espresso
   * declares the field on one marker profile (external_id only), so 'exists' means the marker has it.
   */
  protected async ensureField(call: EspCall, target: ProcessorTarget): Promise<'exists' | 'created'> {
    const field = target.fieldName;
    const { body } = await call<Collection<Profile>>({
      method: 'GET',
      url: '/api/profiles',
      query: {
        filter: `equals(external_id,"${KLAVIYO_MARKER_EXTERNAL_ID}")`,
        'fields[profile]': 'external_id,properties',
        'page[size]': 1,
      },
    });
    if (!Array.isArray(body?.data)) throw malformed('profiles');
    const marker = body.data[0];
    if (marker && typeof marker.id !== 'string') throw malformed('profiles');
    if (marker?.attributes?.properties?.[field] != null) return 'exists';
    const properties = { [field]: MARKER_VALUE };
    if (marker) {
      await call({
        method: 'PATCH',
        url: `/api/profiles/${encodeURIComponent(marker.id)}`,
        headers: { 'content-type': JSON_API },
        json: { data: { type: 'profile', id: marker.id, attributes: { properties } } },
      });
      return 'created';
    }
    // Another run creating the marker between our read and write answers 409 (the base: 'exists').
    await call({
      method: 'POST',
      url: '/api/profiles',
      headers: { 'content-type': JSON_API },
      json: {
        data: { type: 'profile', attributes: { external_id: KLAVIYO_MARKER_EXTERNAL_ID, properties } },
      },
    });
    return 'created';
  }

  /** Get Profiles pages (100, cursor); custom properties cannot be filtered on, so we filter here. */
  protected async listContactsNeedingValue(
    call: EspCall,
    target: ProcessorTarget,
    cursor: string | undefined,
    mode: ListMode,
  ): Promise<ContactPage> {
    const { body } = await call<Collection<Profile>>({
      method: 'GET',
      url: '/api/profiles',
      query: { 'fields[profile]': 'external_id,properties', 'page[size]': PAGE_SIZE, 'page[cursor]': cursor },
    });
    if (!Array.isArray(body?.data)) throw malformed('profiles');
    const contacts: ContactPage['contacts'] = [];
    for (const p of body.data) {
      if (typeof p?.id !== 'string' || !p.id) throw malformed('profiles');
      if (p.attributes?.external_id === KLAVIYO_MARKER_EXTERNAL_ID) continue;
      const value = p.attributes?.properties?.[target.fieldName];
      const empty = value === undefined || value === null || (typeof value === 'string' && !value.trim());
      if (mode === 'incremental' && !empty) continue;
      // Any value a profile holds is its value (kept, never replaced), whatever its form.
      contacts.push(empty ? { contactId: p.id } : { contactId: p.id, currentValue: String(value) });
    }
    const next = body.links?.next;
    if (!next) return { contacts };
    // Keep only Klaviyo's opaque cursor (an id position, never an email: we do not sort by email).
    const nextCursor = new URL(next, this.baseUrl(target)).searchParams.get('page[cursor]');
    if (!nextCursor) throw malformed('profiles (next link without a cursor)');
    return { contacts, nextCursor };
  }

  /**
   * One bulk import job keyed by profile id only: with no email, phone or external id in a row,
   * Klaviyo has nothing to create a profile from, so an unknown id is an import error, never a new
   * profile. The job is polled with backoff; its import errors point at rows.
   */
  protected async updateContacts(
    call: EspCall,
    target: ProcessorTarget,
    batch: ContactUpdate[],
  ): Promise<ContactResult[]> {
    const jobCall: EspCall = (request, options) => call(request, { ...options, limit: 'jobs' });
    const { body: created } = await jobCall<Job>({
      method: 'POST',
      url: '/api/profile-bulk-import-jobs',
      headers: { 'content-type': JSON_API },
      json: {
        data: {
          type: 'profile-bulk-import-job',
          attributes: {
            profiles: {
              data: batch.map((u) => ({
                type: 'profile',
                id: u.contactId,
                attributes: { properties: { [target.fieldName]: u.value } },
              })),
            },
          },
        },
      },
    });
    const jobId = created?.data?.id;
    if (typeof jobId !== 'string' || !jobId) throw malformed('import job');
    const job = await this.waitForJob(jobCall, jobId);
    const failed = job.data.attributes.failed_count ?? 0;
    const errors = new Map<number, string>();
    if (failed > 0) {
      const { listed, unmapped } = await this.readImportErrors(jobCall, jobId, batch, errors);
      // Rows we cannot tell apart: rewriting the same values is safe, so the batch is retried.
      if (unmapped > 0 || listed < failed) {
        throw new TransientError(
          `Klaviyo reported ${failed} failed rows in an import job but pointed at ${errors.size}`,
        );
      }
    }
    return batch.map((u, i): ContactResult => {
      const reason = errors.get(i);
      return reason === undefined
        ? { contactId: u.contactId, status: 'updated' }
        : { contactId: u.contactId, status: 'rejected', reason: reason.split(u.contactId).join('[profile]') };
    });
  }

  private async waitForJob(call: EspCall, jobId: string): Promise<Job> {
    const started = Date.now();
    let delay = this.options.jobPollMs ?? 2_000;
    for (;;) {
      await sleep(delay);
      delay = Math.min(delay * 2, MAX_POLL_MS);
      let job: Job;
      try {
        ({ body: job } = await call<Job>({
          method: 'GET',
          url: `/api/profile-bulk-import-jobs/${encodeURIComponent(jobId)}`,
          query: { 'fields[profile-bulk-import-job]': 'status,total_count,failed_count' },
        }));
      } catch (err) {
        // The job runs on regardless: wait out a 429 or a blip instead of submitting it again.
        if (err instanceof RateLimitedError) delay = Math.max(delay, err.retryAfterMs);
        else if (!(err instanceof TransientError)) throw err;
        if (Date.now() - started > (this.options.jobTimeoutMs ?? 20 * 60_000)) throw err;
        continue;
      }
      const status = job?.data?.attributes?.status;
      if (typeof status !== 'string') throw malformed('import job');
      if (status === 'complete') return job;
      if (status === 'cancelled') throw new TransientError('Klaviyo cancelled the import job');
      if (Date.now() - started > (this.options.jobTimeoutMs ?? 20 * 60_000)) {
        throw new TransientError(`Klaviyo import job still ${status} after ${Date.now() - started} ms`);
      }
    }
  }

  private async readImportErrors(
    call: EspCall,
    jobId: string,
    batch: ContactUpdate[],
    errors: Map<number, string>,
  ): Promise<{ listed: number; unmapped: number }> {
    let listed = 0;
    let unmapped = 0;
    const rowOf = new Map(batch.map((u, i) => [u.contactId, i]));
    let cursor: string | undefined;
    do {
      const { body } = await call<Collection<ImportError>>({
        method: 'GET',
        url: `/api/profile-bulk-import-jobs/${encodeURIComponent(jobId)}/import-errors`,
        query: { 'page[size]': PAGE_SIZE, 'page[cursor]': cursor },
      });
      if (!Array.isArray(body?.data)) throw malformed('import errors');
      for (const e of body.data) {
        const a = e?.attributes;
        if (!a) throw malformed('import errors');
        const pointed = ROW_POINTER.exec(a.source?.pointer ?? '');
        const byId =
          typeof a.original_payload?.id === 'string' ? rowOf.get(a.original_payload.id) : undefined;
        const row = pointed ? Number(pointed[1]) : byId;
        listed++;
        if (row === undefined || row >= batch.length) {
          unmapped++;
          continue;
        }
        // Reasons are sanitized centrally (emails); the profile id is taken out in updateContacts.
        errors.set(row, [a.code, a.detail || a.title].filter(Boolean).join(': ') || 'rejected by Klaviyo');
      }
      const next = body.links?.next;
      cursor = next ? (new URL(next, 'http://x').searchParams.get('page[cursor]') ?? undefined) : undefined;
    } while (cursor);
    return { listed, unmapped };
  }
}

interface AccountAttributes {
  contact_information?: { organization_name?: string | null };
}

function malformed(what: string): TransientError {
  return new TransientError(`Klaviyo sent a malformed ${what} response`);
}
