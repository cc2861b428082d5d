// What a run did beyond its counts, in words: the CLI, the admin page and the Web UI all say it so.
// Pure (no I/O): workflow code uses it too.
import type { RunSummary } from './summaries';

type Reported = Pick<
  RunSummary,
  'dryRun' | 'maintenance' | 'contacts' | 'foreignValues' | 'replacing' | 'replacedValues'
>;

/** e.g. `would create field lcee`, `kept 3 values espresso would not write`. Empty when there is nothing to say. */
export function runNotes(s: Reported): string[] {
  const notes: string[] = [];
  const field = s.maintenance?.fieldName;
  if (s.maintenance?.field === 'would_create') notes.push(`would create field ${field}`);
  if (s.maintenance?.field === 'created') notes.push(`created field ${field}`);
  if (s.dryRun)
    notes.push(`would write ${s.contacts.exported} ${s.contacts.exported === 1 ? 'value' : 'values'}`);
  const values = (n: number) => `${n} ${n === 1 ? 'value' : 'values'} espresso would not write`;
  if (s.replacing !== undefined) {
    notes.push(
      s.dryRun
        ? `would replace ${values(s.replacing)}`
        : `replaced ${s.replacedValues ?? 0} of ${values(s.replacing)}`,
    );
  }
  if (s.foreignValues) notes.push(`kept ${values(s.foreignValues)}`);
  return notes;
}
