// Redispatch ("retry failed rows"): a new run writes an earlier run's values again to those of its
// contacts that were not updated. The CLI and the admin page check the earlier run the same way.
import { NotFoundError, type BlobStore } from '../storage';
import { refuseDryRun } from './dry-runs';
import { runFiles } from './files';

/** The earlier run left nothing to write again. */
export class NothingToRedispatchError extends Error {
  override name = 'NothingToRedispatchError';
}

/** Throws DryRunFolderError or NothingToRedispatchError when `folder` cannot be redispatched. */
export async function checkRedispatchable(
  blobs: BlobStore,
  configurationId: string,
  folder: string,
): Promise<void> {
  await refuseDryRun(blobs, configurationId, folder);
  try {
    await blobs.get(runFiles.exportManifest(configurationId, folder));
  } catch (err) {
    if (err instanceof NotFoundError) {
      throw new NothingToRedispatchError(
        `run ${folder} of ${configurationId} has no finished export: nothing to redispatch`,
      );
    }
    throw err;
  }
}
