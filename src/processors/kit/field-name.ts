// The custom field's name under an ESP's rules (case, allowed characters, length).
import type { ProcessorDescriptor } from '../types';

export function fieldNameUnder(descriptor: Pick<ProcessorDescriptor, 'id' | 'field'>, base: string): string {
  const { field } = descriptor;
  const cased =
    field.case === 'upper' ? base.toUpperCase() : field.case === 'lower' ? base.toLowerCase() : base;
  const name = [...cased]
    .filter((c) => field.allowed.test(c))
    .join('')
    .slice(0, field.maxLength);
  if (!name) throw new Error(`field name ${JSON.stringify(base)} has no character ${descriptor.id} allows`);
  return name;
}
