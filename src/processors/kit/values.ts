// What every ESP shares about the value espresso writes and the contacts it lists.
import type { ContactRef, ListMode } from '../types';

/** The value espresso writes: 128 random bits, base64url. Anything else is refused before the ESP. */
const VALUE = /^[A-Za-z0-9_-]{16,64}$/;

export function isValue(value: unknown): value is string {
  return typeof value === 'string' && VALUE.test(value);
}

/**
 * A listed contact as a page carries it: in `incremental` mode only contacts without a value; in
 * `full` mode everyone, with the value a contact holds (kept, never replaced).
 */
export function listedContact(
  contactId: string,
  currentValue: string | undefined,
  mode: ListMode,
): ContactRef | undefined {
  if (currentValue === undefined) return { contactId };
  return mode === 'full' ? { contactId, currentValue } : undefined;
}

/**
 * Any value a contact holds is its value, whatever its form: a number, or a string that is not
 * blank. Blank, null and absent mean no value.
 */
export function heldValue(raw: unknown): string | undefined {
  if (raw === undefined || raw === null) return undefined;
  const value = String(raw);
  return value.trim() === '' ? undefined : value;
}

/**
 * `text` with each contact id replaced by `[contact]`: reasons and messages end up in results
 * files, summaries and logs, and some ESPs' ids are emails (in forms the email pattern may miss).
 * Ids shorter than `minLength` are left alone (they would mangle ordinary words and numbers).
 */
export function redactContactIds(text: string, ids: Iterable<string>, minLength = 1): string {
  let out = text;
  for (const id of ids) if (id.length >= minLength) out = out.split(id).join('[contact]');
  return out;
}
