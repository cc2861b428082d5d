// What a run did beyond its counts, in words: the CLI, the admin page and the Web UI all say it so.
// Pure (no I/O): workflow code uses it too.
import type { RunSummary } from '../activities/summary';

type Reported = Pick<RunSummary, 'dryRun' | 'maintenance' | 'contacts'>;

/** e.g. `would create field lcee`, `would write 300 values`. Empty when there is nothing to say. */
export function runNotes(s: Reported): string[] {
  const notes: string[] = [];
  const field = s.maintenance?.fieldName;
  if (s.maintenance?.field === 'would_create') notes.push(`would create field ${field}`);
  if (s.maintenance?.field === 'created') notes.push(`created field ${field}`);
  if (s.dryRun)
    notes.push(`would write ${s.contacts.exported} ${s.contacts.exported === 1 ? 'value' : 'values'}`);
  return notes;
}
