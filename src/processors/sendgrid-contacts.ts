// SendGrid's contact lookups and its asynchronous upsert job, for SendGridProcessor.sendBatch:
// ids resolved to the identifiers an update must repeat, the job polled to its end, its errors
// file read, and copies the upsert re-created of contacts deleted meanwhile removed again.
import { z } from 'zod';
import type { EspCall } from './base-processor';
import { RequestRejectedError, TransientError } from './errors';
import { parseCsv } from './kit/csv';
import { downloadText } from './kit/file-download';
import { pollJob } from './kit/poll';
import { expectShape } from './kit/shape';

/** What SendGrid identifies a contact by: updating a contact must repeat every one it has. */
const IDENTIFIERS = ['email', 'phone_number_id', 'external_id', 'anonymous_id'] as const;
export type Identifiers = Partial<Record<(typeof IDENTIFIERS)[number], string>>;
/** POST /v3/marketing/contacts/batch and /search/emails take at most 100 ids/emails. */
const LOOKUP_MAX = 100;
/** /search/emails takes addresses of at most 100 characters (the upsert takes 254), else 400s. */
const SEARCH_EMAIL_MAX = 100;
const DELETED_DURING_UPDATE = 'the contact was deleted in SendGrid during the update';

const lookup = z.object({ result: z.array(z.looseObject({ id: z.string() })) });
const emailSearch = z.object({ result: z.record(z.string(), z.unknown()) });
const emailMatch = z.object({ contact: z.object({ id: z.string() }) });
const importStatus = z.object({
  status: z.string(),
  results: z
    .object({
      created_count: z.number().optional(),
      errored_count: z.number().optional(),
      errors_url: z.string().optional(),
    })
    .optional(),
});
export type ImportStatus = z.output<typeof importStatus>;
const upsertErrors = z.object({ errors: z.array(z.unknown()) });
const rowPointer = z.object({ field: z.string().regex(/^contacts\[\d+\]/) });

/** contact id -> the identifiers the contact has; ids SendGrid does not know are absent. */
export async function identifiersOf(call: EspCall, ids: string[]): Promise<Map<string, Identifiers>> {
  const contacts = new Map<string, Identifiers>();
  for (let i = 0; i < ids.length; i += LOOKUP_MAX) {
    const body = await postIgnoring404(call, '/v3/marketing/contacts/batch', {
      ids: ids.slice(i, i + LOOKUP_MAX),
    });
    if (body === undefined) continue; // none of these ids exists any more
    for (const c of expectShape(lookup, body, 'SendGrid', 'the contact lookup').result) {
      contacts.set(c.id, identifiersIn(c));
    }
  }
  return contacts;
}

/** email (lower case) -> contact id, for the addresses SendGrid finds. */
async function idsByEmail(call: EspCall, emails: string[]): Promise<Map<string, string>> {
  const ids = new Map<string, string>();
  for (let i = 0; i < emails.length; i += LOOKUP_MAX) {
    const body = await postIgnoring404(call, '/v3/marketing/contacts/search/emails', {
      emails: emails.slice(i, i + LOOKUP_MAX),
    });
    if (body === undefined) continue; // none of these addresses is found
    const { result } = expectShape(emailSearch, body, 'SendGrid', 'the email search');
    for (const [email, match] of Object.entries(result)) {
      const found = emailMatch.safeParse(match);
      if (found.success) ids.set(email.toLowerCase(), found.data.contact.id);
    }
  }
  return ids;
}

/** The body of a lookup, or undefined when SendGrid answers 404 (none of them found). */
async function postIgnoring404(call: EspCall, url: string, json: unknown): Promise<unknown> {
  try {
    return (await call({ method: 'POST', url, json })).body;
  } catch (err) {
    if (err instanceof RequestRejectedError && err.status === 404) return undefined;
    throw err;
  }
}

/**
 * The upsert created contacts: some ids were deleted between the lookup and the upsert, which
 * re-created them under new ids. Finds those rows by id, deletes the copies the email search
 * finds, and returns each such row's rejection reason.
 */
export async function undoCreated(
  call: EspCall,
  rows: Array<{ contactId: string; email: string }>,
): Promise<Map<string, string>> {
  const present = await identifiersOf(
    call,
    rows.map((r) => r.contactId),
  );
  const gone = rows.filter((r) => !present.has(r.contactId));
  // Longer addresses would make the search answer 400 for all of them.
  const searchable = gone.filter((r) => r.email.length <= SEARCH_EMAIL_MAX);
  const found = await idsByEmail(
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

/** The upsert job once it has ended (completed, errored or failed). */
export async function waitForImport(
  call: EspCall,
  jobId: string,
  poll: { pollMs: number; waitMs: number },
): Promise<ImportStatus> {
  const job = await pollJob(
    async () => {
      const { body } = await call({
        method: 'GET',
        url: `/v3/marketing/contacts/imports/${encodeURIComponent(jobId)}`,
      });
      const status = expectShape(importStatus, body, 'SendGrid', 'the import status');
      return ['completed', 'errored', 'failed'].includes(status.status) ? status : undefined;
    },
    { firstDelayMs: poll.pollMs, waitMs: poll.waitMs, delayFirst: true, signal: call.signal },
  );
  if (!job) throw new TransientError('the SendGrid upsert job is still pending');
  return job;
}

/** The job's errors file (CSV with a header; an email column and an error column): email -> reason. */
export async function rowErrorsFrom(
  url: string,
  apiBase: string,
  signal?: AbortSignal,
): Promise<Map<string, string>> {
  const what = 'the SendGrid upsert errors file';
  const [header, ...rows] = parseCsv(await downloadText({ url, what, apiBase, timeoutMs: 120_000, signal }));
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

/** `errors[].field` such as `contacts[3].email` points at a row of the upsert. */
export function rowPointers(body: unknown): number[] | undefined {
  const parsed = upsertErrors.safeParse(body);
  if (!parsed.success) return undefined;
  const rows = parsed.data.errors.flatMap((e) => {
    const pointer = rowPointer.safeParse(e);
    return pointer.success ? [Number(/^contacts\[(\d+)\]/.exec(pointer.data.field)![1])] : [];
  });
  return rows.length ? rows : undefined;
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
