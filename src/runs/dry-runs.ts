// A dry run's folder holds values that were never meant for the ESP: nothing writes them, however
// it is asked to (redispatch, a chunk update started by hand, a legacy dispatch).
import { NotFoundError, type BlobStore } from '../storage';
import { runFiles } from './files';

/** Asked to write a dry run's values to the ESP. */
export class DryRunFolderError extends Error {
  override name = 'DryRunFolderError';
  constructor(
    readonly configurationId: string,
    readonly folder: string,
  ) {
    super(
      `run ${folder} of ${configurationId} is a dry run: its values were never meant for the ESP and are never written to it`,
    );
  }
}

/**
 * Throws DryRunFolderError when `folder` holds a dry run. The folder's claim says so (runs since
 * folders are claimed); older folders are known by their export's mark, their summary, or the name
 * runs started by hand give them (`<date>_dry-run-…`, when the run ended before its summary).
 */
export async function refuseDryRun(blobs: BlobStore, configurationId: string, folder: string): Promise<void> {
  const flag = async (key: string) => {
    try {
      const { dryRun } = JSON.parse((await blobs.get(key)).body.toString('utf8')) as { dryRun?: unknown };
      return dryRun === true;
    } catch (err) {
      if (err instanceof NotFoundError) return undefined;
      throw err;
    }
  };
  const claimed = await flag(runFiles.runRecord(configurationId, folder));
  const dryRun =
    claimed ??
    ((await flag(runFiles.exportManifest(configurationId, folder))) ||
      (await flag(runFiles.summary(configurationId, folder))) ||
      /^\d{4}-\d{2}-\d{2}_dry-run-/.test(folder));
  if (dryRun) throw new DryRunFolderError(configurationId, folder);
}
