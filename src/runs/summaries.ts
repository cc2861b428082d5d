import type { ListMode, MaintenanceReport } from '../processors/types';
import { NotFoundError, type BlobStore } from '../storage';
import { runFiles } from './files';

/** summary.json: what a run did, in counts. What the admin page and operators read. */
export interface RunSummary {
  configurationId: string;
  esp: string;
  runDate: string;
  /** The run's folder under runs/<configurationId>/: the run date, or <runDate>_<folderSuffix> for manual runs. */
  run: string;
  mode: ListMode;
  dryRun: boolean;
  /**
   * completed; skipped (the configuration is not active); busy (another run was writing it);
   * needs_reauth; failed; timed_out (passed its deadline); cancelled.
   */
  status: 'completed' | 'needs_reauth' | 'skipped' | 'busy' | 'failed' | 'timed_out' | 'cancelled';
  reason?: string;
  workflowId: string;
  startedAt: string;
  finishedAt: string;
  durationsMs: { maintenance: number; export: number; dispatch: number; total: number };
  maintenance?: MaintenanceReport;
  contacts: { exported: number; alreadySet: number; updated: number; rejected: number };
  /** Of alreadySet: values in a format espresso would not write itself (kept all the same). */
  foreignValues?: number;
  /**
   * Runs asked to replace such values (`sync --full --replace-foreign-values`): the contacts whose
   * value gets a new one (counted in exported; each chunk line keeps the old value as `previous`)…
   */
  replacing?: number;
  /** …and of those, the values written over (the others were rejected, and keep their value). */
  replacedValues?: number;
  rejectedByKind: Record<string, number>;
  chunks: number;
}

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
