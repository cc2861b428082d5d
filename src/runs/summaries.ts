import type { RunSummary } from '../activities/summary';
import { NotFoundError, type BlobStore } from '../storage';
import { runFiles } from './files';

/** The newest run's summary of a configuration, or undefined before its first run. */
export async function latestSummary(
  blobs: BlobStore,
  configurationId: string,
): Promise<RunSummary | undefined> {
  try {
    const blob = await blobs.get(runFiles.latestSummary(configurationId));
    return JSON.parse(blob.body.toString('utf8')) as RunSummary;
  } catch (err) {
    if (err instanceof NotFoundError) return undefined;
    throw err;
  }
}
