// Twilio SendGrid Marketing Campaigns (v3 API). API key only. Contacts are listed from a contact
// export (sendgrid-export.ts); values are written by the asynchronous, email-keyed upsert, after
// resolving contact ids to the contacts' identifiers (an update must repeat every one), so that a
// contact deleted since the export is rejected rather than re-created (sendgrid-contacts.ts).
import { tmpdir } from 'node:os';
import { z } from 'zod';
import { BaseProcessor } from './base-processor';
import type { EspCall, ListingArgs, ProcessorDeps, UpdateArgs } from './base-processor';
import { RequestRejectedError, TransientError } from './errors';
import { withHostFallback, type RegionalHostOptions } from './kit/host-fallback';
import type { JobPollOptions } from './kit/poll';
import { createUnlessRaced } from './kit/field-create';
import { expectShape } from './kit/shape';
import { redactContactIds } from './kit/values';
import {
  identifiersOf,
  rowErrorsFrom,
  rowPointers,
  undoCreated,
  waitForImport,
  type Identifiers,
} from './sendgrid-contacts';
import { readExportPage, startExport } from './sendgrid-export';
import type * as P from './types';

/** Defaults: https://api.sendgrid.com, EU https://api.eu.sendgrid.com; job polls from 2 s. */
export interface SendGridOptions extends RegionalHostOptions, JobPollOptions {
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
const CONTACT_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const FIELD_ID_TTL_MS = 60_000;

const username = z.object({ user_id: z.number(), username: z.string() });
const createdField = z.object({ id: z.string() });
const fieldList = z.object({ custom_fields: z.array(z.unknown()) });
const namedField = z.object({
  name: z.string(),
  field_type: z.unknown().optional(),
  id: z.unknown().optional(),
});
const upsertStarted = z.object({ job_id: z.string() });

type Row = P.ContactUpdate & { email: string; identifiers: Identifiers };

export class SendGridProcessor extends BaseProcessor {
  readonly descriptor: P.ProcessorDescriptor = {
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

  protected baseUrl(target?: Pick<P.ProcessorTarget, 'apiBaseUrl'>): string {
    return (target?.apiBaseUrl ?? this.options.apiBaseUrl ?? DEFAULT_API).replace(/\/$/, '');
  }

  /**
   * `GET /v3/user/username` identifies the account. A key the global host refuses is tried on the EU
   * host (EU regional subusers live only there); the configuration then keeps that host.
   */
  protected async validateCredentials(call: EspCall): Promise<P.AccountInfo> {
    const eu = (this.options.euApiBaseUrl ?? EU_API).replace(/\/$/, '');
    const fallback = this.baseUrl() === eu ? undefined : eu;
    // The first refusal says it best (the EU host may not even resolve where espresso runs).
    const { result, host } = await withHostFallback({ primary: '', fallback, bothFail: 'first' }, (base) =>
      call({ method: 'GET', url: `${base}/v3/user/username` }),
    );
    const body = expectShape(username, result.body, 'SendGrid', 'GET /v3/user/username');
    return {
      accountId: String(body.user_id),
      accountLabel: body.username,
      lists: [],
      ...(host ? { apiBaseUrl: host } : {}),
    };
  }

  protected async ensureField(call: EspCall, target: P.ProcessorTarget): Promise<'exists' | 'created'> {
    if (await this.findField(call, target)) return 'exists';
    const create = async () => {
      const { body } = await call({
        method: 'POST',
        url: '/v3/marketing/field_definitions',
        json: { name: target.fieldName, field_type: 'Text' },
      });
      const { id } = expectShape(createdField, body, 'SendGrid', 'the field creation');
      this.fieldIds.set(target.id, { id, at: Date.now() });
    };
    return createUnlessRaced(create, async () => !!(await this.findField(call, target)));
  }

  protected override startExportJob(call: EspCall): Promise<string> {
    return startExport(call, this.tmpDir());
  }

  protected async fetchContactPage(...[call, target, cursor, mode]: ListingArgs): Promise<P.ContactPage> {
    return readExportPage(call, cursor ?? (await this.startExportJob(call)), target.fieldName, mode, {
      pollMs: this.pollMs(),
      waitMs: this.options.exportWaitMs ?? 5 * 60_000,
      dir: this.tmpDir(),
      pageSize: this.options.pageSize ?? 1000,
      apiBase: this.baseUrl(target),
    });
  }

  protected async sendBatch(...[call, target, batch]: UpdateArgs): Promise<P.ContactResult[]> {
    const results: P.ContactResult[] = [];
    const reject = (contactId: string, reason: string) =>
      results.push({ contactId, status: 'rejected', reason });
    const rows = await this.rowsToWrite(call, batch, reject);
    if (rows.length === 0) return results;
    const jobId = await this.upsert(call, target, batch, rows);
    const job = await waitForImport(call, jobId, {
      pollMs: this.pollMs(),
      waitMs: this.options.importWaitMs ?? 15 * 60_000,
    });
    if (job.status === 'failed' && !job.results?.errors_url) {
      throw new RequestRejectedError('SendGrid could not process the upsert job');
    }
    const rowErrors = job.results?.errors_url
      ? await rowErrorsFrom(job.results.errors_url, this.baseUrl(target), call.signal)
      : new Map<string, string>();
    const named = rows.filter((r) => rowErrors.has(r.email.toLowerCase())).length;
    if ((job.results?.errored_count ?? 0) > named) {
      throw new TransientError('the SendGrid upsert job reported errors its errors file does not name');
    }
    // Rows the job refused created nothing.
    const written = rows.filter((r) => !rowErrors.has(r.email.toLowerCase()));
    const deleted =
      (job.results?.created_count ?? 0) > 0 ? await undoCreated(call, written) : new Map<string, string>();
    for (const r of rows) {
      const error = rowErrors.get(r.email.toLowerCase());
      const gone = deleted.get(r.contactId);
      if (error !== undefined)
        reject(r.contactId, redactContactIds(error, [r.email]) || 'SendGrid rejected the row');
      else if (gone !== undefined) reject(r.contactId, gone);
      else results.push({ contactId: r.contactId, status: 'updated' });
    }
    return results;
  }

  /**
   * The upsert creates unknown emails: ids are resolved first and the ones that are gone rejected.
   * The same lookup gives the identifiers besides the email, which the update must repeat.
   */
  private async rowsToWrite(
    call: EspCall,
    batch: P.ContactUpdate[],
    reject: (contactId: string, reason: string) => void,
  ): Promise<Row[]> {
    const known = batch.filter((u) => CONTACT_ID.test(u.contactId));
    for (const u of batch)
      if (!CONTACT_ID.test(u.contactId)) reject(u.contactId, 'not a SendGrid contact id');
    const contacts = await identifiersOf(
      call,
      known.map((u) => u.contactId),
    );
    const rows: Row[] = [];
    for (const u of known) {
      const identifiers = contacts.get(u.contactId);
      if (identifiers === undefined) reject(u.contactId, 'the contact no longer exists in SendGrid');
      else if (identifiers.email === undefined)
        reject(u.contactId, 'the contact has no email address (SendGrid upserts by email)');
      else rows.push({ ...u, email: identifiers.email, identifiers });
    }
    return rows;
  }

  /** Starts the upsert job; a whole-upsert rejection's row pointers are made indexes into `batch`. */
  private async upsert(
    call: EspCall,
    target: P.ProcessorTarget,
    batch: P.ContactUpdate[],
    rows: Row[],
  ): Promise<string> {
    const fieldId = await this.fieldId(call, target);
    try {
      const { body } = await call(
        {
          method: 'PUT',
          url: '/v3/marketing/contacts',
          json: {
            contacts: rows.map((r) => ({ ...r.identifiers, custom_fields: { [fieldId]: r.value } })),
          },
        },
        { rowsFromError: rowPointers },
      );
      return expectShape(upsertStarted, body, 'SendGrid', 'the upsert').job_id;
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
  }

  // ---- the custom field ----

  private async findField(
    call: EspCall,
    target: P.ProcessorTarget,
  ): Promise<{ id: string; name: string } | undefined> {
    const { body } = await call({ method: 'GET', url: '/v3/marketing/field_definitions' });
    const { custom_fields } = expectShape(fieldList, body, 'SendGrid', 'the field definitions');
    // Names are unique case-insensitively.
    const name = target.fieldName.toLowerCase();
    const field = custom_fields
      .flatMap((f) => {
        const parsed = namedField.safeParse(f);
        return parsed.success ? [parsed.data] : [];
      })
      .find((f) => f.name.toLowerCase() === name);
    if (!field) {
      this.fieldIds.delete(target.id);
      return undefined;
    }
    if (field.field_type !== 'Text' || typeof field.id !== 'string') {
      throw new RequestRejectedError(
        `the SendGrid custom field ${field.name} exists with type ${String(field.field_type)}; it must be Text`,
      );
    }
    this.fieldIds.set(target.id, { id: field.id, at: Date.now() });
    return { id: field.id, name: field.name };
  }

  private async fieldId(call: EspCall, target: P.ProcessorTarget): Promise<string> {
    const cached = this.fieldIds.get(target.id);
    if (cached && Date.now() - cached.at < FIELD_ID_TTL_MS) return cached.id;
    const field = await this.findField(call, target);
    if (!field) throw new TransientError(`the SendGrid custom field ${target.fieldName} does not exist yet`);
    return field.id;
  }

  private pollMs(): number {
    return this.options.jobPollMs ?? 2_000;
  }

  private tmpDir(): string {
    return this.options.tmpDir ?? tmpdir();
  }
}
