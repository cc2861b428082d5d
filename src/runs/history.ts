// A configuration's finished runs, newest first, one page at a time. Each run's summary is copied
// under a key that sorts newest first, so a page is one listing and a few reads however many runs
// the configuration has, and however many files each run left.
import type { RunSummary } from './summaries';
import { NotFoundError, type BlobStore } from '../storage';
import { runFiles, runFolderSchema } from './files';

/** Sorts newest first: 13 digits of (a date far away − the run's start, in ms). */
const FAR = 9_999_999_999_999;

/** A page cursor (`after`): the key of the last run shown, without its prefix. */
export const historyCursorPattern = /^\d{13}_[0-9a-z_-]{10,52}\.json$/;

const historyPrefix = (configurationId: string) => `history/${configurationId}/`;

export function historyKey(summary: Pick<RunSummary, 'configurationId' | 'startedAt' | 'run'>): string {
  const started = Date.parse(summary.startedAt);
  const order = String(FAR - (Number.isNaN(started) ? 0 : started)).padStart(13, '0');
  return `${historyPrefix(summary.configurationId)}${order}_${summary.run}.json`;
}

/** Adds (or replaces) a finished run in its configuration's history. */
export async function recordHistory(blobs: BlobStore, summary: RunSummary, body?: string): Promise<void> {
  await blobs.put(historyKey(summary), body ?? JSON.stringify(summary, null, 2) + '\n', {
    contentType: 'application/json',
  });
}

export interface HistoryPage {
  runs: RunSummary[];
  /** Pass as `after` for the next page; undefined on the last page. */
  next?: string;
}

/** At most `limit` runs after the cursor `after`, newest first. */
export async function runHistory(
  blobs: BlobStore,
  configurationId: string,
  page: { after?: string; limit: number },
): Promise<HistoryPage> {
  const prefix = historyPrefix(configurationId);
  const after = page.after ? `${prefix}${page.after}` : undefined;
  let keys = await blobs.listPage(prefix, { after, limit: page.limit + 1 });
  if (keys.length === 0 && !after && (await backfill(blobs, configurationId)) > 0)
    keys = await blobs.listPage(prefix, { limit: page.limit + 1 });
  const shown = keys.slice(0, page.limit);
  const runs = (await Promise.all(shown.map((key) => readSummary(blobs, key)))).filter(
    (s): s is RunSummary => s !== undefined,
  );
  const last = shown[shown.length - 1];
  return keys.length > page.limit && last ? { runs, next: last.slice(prefix.length) } : { runs };
}

/** A run's summary, or undefined while it runs (or when it ended before writing one). */
export async function runSummary(
  blobs: BlobStore,
  configurationId: string,
  folder: string,
): Promise<RunSummary | undefined> {
  return readSummary(blobs, runFiles.summary(configurationId, folder));
}

async function readSummary(blobs: BlobStore, key: string): Promise<RunSummary | undefined> {
  try {
    return JSON.parse((await blobs.get(key)).body.toString('utf8')) as RunSummary;
  } catch (err) {
    if (err instanceof NotFoundError) return undefined;
    throw err;
  }
}

/**
 * Runs that finished before histories were kept have only their folder's summary: the first look at
 * an empty history copies them in (once: afterwards the history is not empty). Returns how many.
 */
async function backfill(blobs: BlobStore, configurationId: string): Promise<number> {
  const prefix = `runs/${configurationId}/`;
  const keys = (await blobs.list(prefix)).filter((key) => {
    const [folder, file] = key.slice(prefix.length).split('/');
    return file === 'summary.json' && runFolderSchema.safeParse(folder).success;
  });
  let copied = 0;
  for (const key of keys) {
    const summary = await readSummary(blobs, key);
    if (summary?.configurationId !== configurationId) continue;
    await recordHistory(blobs, summary);
    copied++;
  }
  return copied;
}
