// Where a run's files live in the blob store, and the shape of their lines (docs/storage.md).
import { z } from 'zod';

/** Contacts per chunk file. */
export const CHUNK_LINES = 10_000;
/** Characters per chunk line: a longer one is damaged (rejected, never written). */
export const CHUNK_LINE_MAX = 1_000;

const pad = (n: number) => String(n).padStart(5, '0');

export const runFiles = {
  prefix: (configurationId: string, runFolder: string) => `runs/${configurationId}/${runFolder}/`,
  /** `chunk` counts from 1. */
  contacts: (configurationId: string, runFolder: string, chunk: number) =>
    `${runFiles.prefix(configurationId, runFolder)}contacts-${pad(chunk)}.jsonl`,
  results: (configurationId: string, runFolder: string, chunk: number) =>
    `${runFiles.prefix(configurationId, runFolder)}results-${pad(chunk)}.jsonl`,
  /** Results of a chunk's finished groups while the chunk is in progress, merged when it ends. */
  resultsPart: (configurationId: string, runFolder: string, chunk: number, part: number) =>
    `${runFiles.prefix(configurationId, runFolder)}parts/results-${pad(chunk)}-${pad(part)}.jsonl`,
  /**
   * Results a chunk's attempt had for lines past its last part file when a batch failed (batches
   * answered beside the one that failed): the retry takes them instead of sending those lines
   * again. Removed with the part files.
   */
  resultsAhead: (configurationId: string, runFolder: string, chunk: number) =>
    `${runFiles.prefix(configurationId, runFolder)}parts/ahead-${pad(chunk)}.jsonl`,
  /** Written when the export has finished: a retry of the same run reuses its chunks. */
  exportManifest: (configurationId: string, runFolder: string) =>
    `${runFiles.prefix(configurationId, runFolder)}export.json`,
  /** The ESP export job a listing reads (Iterable, SendGrid): saved once started, so a retry reads it. */
  exportJob: (configurationId: string, runFolder: string) =>
    `${runFiles.prefix(configurationId, runFolder)}export-job.json`,
  /**
   * Where the export is: the chunk files it has made durable and the ESP cursor after them. Chunk
   * files up to its count are final (the run may be writing them); a retry resumes after them.
   */
  exportProgress: (configurationId: string, runFolder: string) =>
    `${runFiles.prefix(configurationId, runFolder)}export-progress.json`,
  /**
   * Once the export has ended and every chunk is in flight, the larger shares the run gives its
   * chunks as others end (chunk number -> window): each chunk reads it while it writes.
   */
  chunkWindows: (configurationId: string, runFolder: string) =>
    `${runFiles.prefix(configurationId, runFolder)}chunk-windows.json`,
  /** Which run owns the folder (written first, with a conditional write): one run per folder. */
  runRecord: (configurationId: string, runFolder: string) =>
    `${runFiles.prefix(configurationId, runFolder)}run.json`,
  summary: (configurationId: string, runFolder: string) =>
    `${runFiles.prefix(configurationId, runFolder)}summary.json`,
  /** A copy of the newest run's summary, so pages need no listing of every run's files. */
  latestSummary: (configurationId: string) => `runs/${configurationId}/latest-summary.json`,
};

export const chunkLineSchema = z.object({
  contactId: z.string().min(1).max(200),
  value: z.string(),
  /** The value this one replaces (a run asked to replace values espresso would not write). */
  previous: z.string().optional(),
});
export type ChunkLine = z.infer<typeof chunkLineSchema>;

/**
 * A JSON string's characters that it holds as they are: none of a quote, a backslash, a control
 * character or a surrogate (JSON.stringify escapes the first three and lone surrogates).
 */
// eslint-disable-next-line no-control-regex -- the control characters JSON escapes
const VERBATIM = /^[^"\\\u0000-\u001f\ud800-\udfff]*$/;

/**
 * A chunk line with a new value, exactly as JSON.stringify({ contactId, value }) writes it. Every
 * contact of every run is written one, so ids (and values) that need no escaping skip
 * JSON.stringify, which costs about five times as much.
 */
export function chunkLineText(contactId: string, value: string): string {
  return VERBATIM.test(contactId) && VERBATIM.test(value)
    ? `{"contactId":"${contactId}","value":"${value}"}`
    : JSON.stringify({ contactId, value });
}

/**
 * A result line as JSON.stringify(line) writes it when its fields are in ResultLine's order (as the
 * chunk update makes them). Nearly every line is an update of an id that needs no escaping, with
 * only its three fields: those skip JSON.stringify.
 */
export function resultLineText(line: ResultLine): string {
  return line.status === 'updated' &&
    VERBATIM.test(line.contactId) &&
    VERBATIM.test(line.value) &&
    Object.keys(line).length === 3
    ? `{"contactId":"${line.contactId}","value":"${line.value}","status":"updated"}`
    : JSON.stringify(line);
}

/** A line as chunkLineText writes it for such ids, with its two strings; nothing escaped. */
// eslint-disable-next-line no-control-regex -- the control characters JSON escapes
const PLAIN_LINE = /^\{"contactId":"([^"\\\u0000-\u001f]{1,200})","value":"([^"\\\u0000-\u001f]*)"\}$/;

/**
 * The contact id and value of a chunk line in the form chunkLineText writes for ids that need no
 * escaping, as JSON.parse would read them (about five times faster); undefined for any other line,
 * which JSON.parse and chunkLineSchema then read.
 */
export function plainChunkLine(raw: string): { contactId: string; value: string } | undefined {
  const match = PLAIN_LINE.exec(raw);
  return match ? { contactId: match[1]!, value: match[2]! } : undefined;
}

export type ResultLine =
  | { contactId: string; value: string; status: 'updated'; previous?: string }
  | { contactId: string | null; value: string | null; status: 'rejected'; reason: string; line?: number };

export const exportJobSchema = z.object({ cursor: z.string().min(1).max(500) });

export const exportManifestSchema = z.object({
  chunkCount: z.number().int().min(0),
  contacts: z.number().int().min(0),
  alreadySet: z.number().int().min(0),
  /** Of alreadySet: values espresso would not have written itself (kept all the same). */
  foreignValues: z.number().int().min(0).optional(),
  /** A run asked to replace such values: of contacts, those whose line replaces one (`previous`). */
  replacing: z.number().int().min(0).optional(),
  mode: z.enum(['incremental', 'full']),
  /** A dry run's export: never written to the ESP, so never redispatched. */
  dryRun: z.boolean().optional(),
  /** A redispatch's export: the earlier run whose values it writes again. */
  retryOf: z.string().optional(),
  /** The maintenance done before the listing (credentials, the field). */
  maintenance: z
    .object({
      credentials: z.enum(['valid', 'refreshed']),
      field: z.enum(['exists', 'created', 'would_create']),
      fieldName: z.string(),
    })
    .optional(),
  finishedAt: z.string(),
});
export type ExportManifest = z.infer<typeof exportManifestSchema>;

/**
 * The kind of a rejection, for counts: the ESP's code before the first ':' (e.g.
 * `contact_suppressed`), when it reads like one; `other` when it is free text (a sentence naming
 * the contact or its address), which must not travel into histories, alerts and metric labels.
 */
export function rejectionKind(reason: string): string {
  const kind = (reason.split(':')[0] ?? reason).trim();
  if (!kind) return 'unknown';
  return REJECTION_KIND.test(kind) ? kind : 'other';
}

/** A code or a short phrase of plain words: `contact_suppressed`, `Member In Compliance State`. */
const REJECTION_KIND = /^[A-Za-z][A-Za-z0-9_ .-]{0,59}$/;

/** A calendar day, YYYY-MM-DD: 2026-99-99 is refused. */
export const runDateSchema = z
  .string()
  .regex(/^\d{4}-\d{2}-\d{2}$/, 'a run date looks like 2026-11-28')
  .refine(isCalendarDay, { error: 'not a day of the calendar' });

export function isCalendarDay(d: string): boolean {
  const t = Date.parse(`${d}T00:00:00Z`);
  return !Number.isNaN(t) && new Date(t).toISOString().slice(0, 10) === d;
}

/** A run's folder name: its date, or <date>_<folderSuffix> for runs started outside the schedule. */
export const runFolderSchema = z
  .string()
  .regex(
    /^\d{4}-\d{2}-\d{2}(_[a-z0-9-]{1,40})?$/,
    'a run looks like 2026-11-28 or 2026-11-28_manual-080503-k3f2',
  );
