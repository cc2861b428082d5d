// A run's per-contact results as people see them (admin pages, downloads, the CLI): read from the
// blob store line by line (a contact search: one results file at a time), never the whole run at
// once, with emails and secrets kept out.
import { sanitize } from '../processors/errors';
import type { BlobStore } from '../storage';
import { lineBatches } from '../storage/lines';
import { rejectionKind, runFiles, type ResultLine } from './files';

/** One result as shown: a contact id that is an email address (Iterable) shows as `[email]`. */
export interface ShownResult {
  /** The chunk file (from 1) and the line in it (from 1): where the row is, and the paging cursor. */
  chunk: number;
  line: number;
  contactId: string;
  status: ResultLine['status'];
  value: string;
  reason?: string;
  kind?: string;
}

export interface RejectedPage {
  rows: ShownResult[];
  /** `<chunk>-<line>` of the last row shown, when more rows may follow. */
  next?: string;
}

export const resultCursorPattern = /^\d{1,6}-\d{1,6}$/;

/** Contact ids a results line holds verbatim and that are shown as they are. */
const PLAIN_ID = /^[A-Za-z0-9_.:-]{1,300}$/;

async function resultFiles(blobs: BlobStore, configurationId: string, folder: string) {
  const prefix = `${runFiles.prefix(configurationId, folder)}results-`;
  return (await blobs.list(prefix))
    .map((key) => ({ key, chunk: Number(/results-(\d+)\.jsonl$/.exec(key)?.[1]) }))
    .filter((f) => Number.isInteger(f.chunk) && f.chunk > 0);
}

function shown(chunk: number, line: number, text: string): ShownResult | undefined {
  let parsed: Partial<ResultLine>;
  try {
    parsed = JSON.parse(text) as Partial<ResultLine>;
  } catch {
    return { chunk, line, contactId: '', status: 'rejected', value: '', reason: 'unreadable result line' };
  }
  if (parsed.status !== 'updated' && parsed.status !== 'rejected') return undefined;
  const row: ShownResult = {
    chunk,
    line,
    contactId: sanitize(String(parsed.contactId ?? '')),
    status: parsed.status,
    value: String(parsed.value ?? ''),
  };
  if (parsed.status === 'rejected') {
    row.reason = sanitize(String(parsed.reason ?? ''));
    row.kind = rejectionKind(row.reason);
  }
  return row;
}

/**
 * Every result of a run, in chunk and line order, from the position after `after` (`chunk-line`);
 * with `holding`, only the lines that hold that text (the others are not parsed). A results file
 * holds at most CHUNK_LINES lines (a few MB): then each is read whole and searched at once, and
 * one without the text (for one contact, nearly all of a run's) is not split into lines.
 */
export async function* runResults(
  blobs: BlobStore,
  configurationId: string,
  folder: string,
  after?: string,
  holding?: string,
): AsyncIterable<ShownResult> {
  const [fromChunk, fromLine] = after ? after.split('-').map(Number) : [0, 0];
  for (const file of await resultFiles(blobs, configurationId, folder)) {
    if (file.chunk < fromChunk!) continue;
    let lines: AsyncIterable<string[]>;
    if (holding === undefined) lines = blobs.readLineBatches(file.key);
    else {
      const { body } = await blobs.get(file.key);
      if (!body.includes(holding)) continue;
      lines = lineBatches([body]);
    }
    let line = 0;
    for await (const batch of lines) {
      for (const text of batch) {
        line++;
        if (file.chunk === fromChunk && line <= fromLine!) continue;
        if (holding !== undefined && !text.includes(holding)) continue;
        const row = shown(file.chunk, line, text);
        if (row) yield row;
      }
    }
  }
}

/** One page of a run's rejected rows (only those of `contactId`, when given). */
export async function rejectedRows(
  blobs: BlobStore,
  configurationId: string,
  folder: string,
  page: { after?: string; limit: number; contactId?: string },
): Promise<RejectedPage> {
  const rows: ShownResult[] = [];
  // A search for one contact reads the whole run: a line without the id is not its row, and is not
  // parsed (2.6 s for 1,000,000 lines otherwise). Only for ids that a line holds as they are: JSON
  // writes these characters unescaped, and `shown` changes none of them (an email, a space would).
  const holding = page.contactId && PLAIN_ID.test(page.contactId) ? page.contactId : undefined;
  for await (const row of runResults(blobs, configurationId, folder, page.after, holding)) {
    if (row.status !== 'rejected' || (page.contactId && row.contactId !== page.contactId)) continue;
    if (rows.length === page.limit) {
      const last = rows[rows.length - 1]!;
      return { rows, next: `${last.chunk}-${last.line}` };
    }
    rows.push(row);
  }
  return { rows };
}

const CSV_COLUMNS = ['chunk', 'line', 'contactId', 'status', 'value', 'reason'] as const;

/** RFC 4180 quoting; a cell a spreadsheet would run as a formula starts with a quote mark. */
function csvCell(value: string | number | undefined): string {
  let text = String(value ?? '');
  if (/^[=+\-@\t\r]/.test(text)) text = `'${text}`;
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

export const csvHeader = `${CSV_COLUMNS.join(',')}\r\n`;

export function csvLine(row: ShownResult): string {
  return `${CSV_COLUMNS.map((c) => csvCell(row[c])).join(',')}\r\n`;
}

export function jsonLine(row: ShownResult): string {
  const { chunk, line, contactId, status, value, reason } = row;
  return `${JSON.stringify({ chunk, line, contactId, status, value, ...(reason ? { reason } : {}) })}\n`;
}
