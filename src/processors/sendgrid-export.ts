// SendGrid lists contacts through a contact export: a job that writes NDJSON files (gzipped) on
// another host. Each file is downloaded to a temp file once and read page by page by byte offset;
// the cursor `exportId~file~files~offset` lets any worker read the next page.
import { createHash } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import type { EspCall } from './base-processor';
import { RequestRejectedError, TransientError } from './errors';
import { downloadToFile } from './kit/file-download';
import { fileExists, readFileLines, sweepStaleFiles } from './kit/export-pages';
import { pollJob } from './kit/poll';
import { expectShape } from './kit/shape';
import { listedContact } from './kit/values';
import type { ContactPage, ContactRef, ListMode } from './types';

export interface ExportSettings {
  /** First delay between export status polls. */
  pollMs: number;
  /** How long one page waits for a pending export before returning an empty page. */
  waitMs: number;
  /** Where export files are downloaded. */
  dir: string;
  /** Contacts per listed page. */
  pageSize: number;
  /** The API's base URL (file links to its origin are allowed: the test fakes). */
  apiBase: string;
}

interface Cursor {
  exportId: string;
  file: number;
  files: number;
  offset: number;
}

const PREFIX = 'espresso-sendgrid-';
const EXPORT_ID = /^[A-Za-z0-9_-]{1,100}$/;
const STALE_DOWNLOAD_MS = 3 * 24 * 3600_000;

const started = z.object({ id: z.string().regex(EXPORT_ID) });
const exportStatus = z.object({
  status: z.string(),
  urls: z.array(z.string()).optional(),
  message: z.string().optional(),
});
const exportRow = z.object({
  contact_id: z.string(),
  email: z.unknown().optional(),
  custom_fields: z.unknown().optional(),
});

/** Starts a contacts export job (and clears downloads of jobs nobody reads any more): its first cursor. */
export async function startExport(call: EspCall, dir: string): Promise<string> {
  await sweepStaleFiles(dir, PREFIX, STALE_DOWNLOAD_MS);
  const { body } = await call({
    method: 'POST',
    url: '/v3/marketing/contacts/exports',
    json: { file_type: 'json' },
  });
  const { id } = expectShape(started, body, 'SendGrid', 'the export start');
  return formatCursor({ exportId: id, file: 0, files: 0, offset: 0 });
}

/** The page at `cursor`: downloads the cursor's file first when this worker has not. */
export async function readExportPage(
  call: EspCall,
  cursor: string,
  fieldName: string,
  mode: ListMode,
  settings: ExportSettings,
): Promise<ContactPage> {
  let at = parseCursor(cursor);
  const path = downloadPath(settings.dir, at);
  if (!(await fileExists(path))) {
    const ready = await waitForExport(call, at, settings);
    if (!ready) return { contacts: [], nextCursor: formatCursor(at) };
    at = ready;
    if (at.file >= at.files) return { contacts: [] };
    const link = { url: ready.url, what: 'the SendGrid export file', apiBase: settings.apiBase };
    await downloadToFile({ ...link, timeoutMs: 60 * 60_000, signal: call.signal }, path);
  }
  const { lines, next, end } = await readFileLines(path, at.offset, settings.pageSize);
  const contacts: ContactRef[] = [];
  for (const line of lines) {
    const row = parseExportRow(line, fieldName);
    if (!row) {
      await rm(path, { force: true });
      throw new TransientError('the SendGrid export file has a malformed row; it will be downloaded again');
    }
    // The upsert is keyed by email: contacts without one (phone/external id only) cannot be written.
    const contact = row.hasEmail ? listedContact(row.id, row.value, mode) : undefined;
    if (contact) contacts.push(contact);
  }
  if (!end) return { contacts, nextCursor: formatCursor({ ...at, offset: next }) };
  await rm(path, { force: true });
  const more = at.file + 1 < at.files;
  return more
    ? { contacts, nextCursor: formatCursor({ ...at, file: at.file + 1, offset: 0 }) }
    : { contacts };
}

/** The export's file to download next, or undefined while it is still pending. */
async function waitForExport(
  call: EspCall,
  at: Cursor,
  settings: ExportSettings,
): Promise<(Cursor & { url: string }) | undefined> {
  return pollJob(
    async () => {
      const { body } = await call({
        method: 'GET',
        url: `/v3/marketing/contacts/exports/${encodeURIComponent(at.exportId)}`,
      });
      const status = expectShape(exportStatus, body, 'SendGrid', 'the export status');
      if (status.status === 'failure') {
        // Not retried with the same cursor: the next run starts a new export.
        throw new RequestRejectedError(
          `the SendGrid contact export failed: ${status.message ?? 'no reason given'}`,
        );
      }
      if (status.status !== 'ready') return undefined;
      if (!status.urls) throw new TransientError('SendGrid answered a ready export without urls');
      if (at.files && status.urls.length !== at.files) {
        throw new RequestRejectedError('the SendGrid export changed its files; start the listing again');
      }
      return { ...at, files: status.urls.length, url: status.urls[at.file] ?? '' };
    },
    { firstDelayMs: settings.pollMs, waitMs: settings.waitMs, signal: call.signal },
  );
}

function downloadPath(dir: string, at: Cursor): string {
  const key = createHash('sha256').update(`${at.exportId}:${at.file}`).digest('hex').slice(0, 32);
  return join(dir, `${PREFIX}${key}.ndjson`);
}

function formatCursor(c: Cursor): string {
  return `${c.exportId}~${c.file}~${c.files}~${c.offset}`;
}

function parseCursor(cursor: string): Cursor {
  const m = /^([A-Za-z0-9_-]{1,100})~(\d+)~(\d+)~(\d+)$/.exec(cursor);
  if (!m) throw new RequestRejectedError('not a SendGrid listing cursor');
  return { exportId: m[1]!, file: Number(m[2]), files: Number(m[3]), offset: Number(m[4]) };
}

/** One line of a JSON export (newline-delimited objects; custom_fields keyed by field name). */
function parseExportRow(
  line: string,
  fieldName: string,
): { id: string; hasEmail: boolean; value?: string } | undefined {
  let json: unknown;
  try {
    json = JSON.parse(line);
  } catch {
    return undefined;
  }
  const row = exportRow.safeParse(json);
  if (!row.success) return undefined;
  const raw = row.data.custom_fields;
  const fields =
    typeof raw === 'object' && raw !== null && !Array.isArray(raw) ? (raw as Record<string, unknown>) : {};
  const key =
    fieldName in fields
      ? fieldName
      : Object.keys(fields).find((k) => k.toLowerCase() === fieldName.toLowerCase());
  const value = key === undefined ? undefined : fields[key];
  return {
    id: row.data.contact_id,
    hasEmail: typeof row.data.email === 'string' && row.data.email !== '',
    value: typeof value === 'string' && value !== '' ? value : undefined,
  };
}
