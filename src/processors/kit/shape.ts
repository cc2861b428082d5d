// ESP answers are read through zod schemas declared beside each ESP. An answer of another shape
// (a field missing, a null where an object was documented) is an ESP glitch, retried like a 5xx:
// it becomes a TransientError here and nowhere else, naming what was asked but never the body.
import type { z } from 'zod';
import { sanitize, TransientError } from '../errors';

/**
 * The body as `schema` reads it, or a TransientError "<esp> answered <what> in an unexpected
 * shape". `what` names the request ("GET /lists"), never data.
 */
export function expectShape<S extends z.ZodType>(
  schema: S,
  body: unknown,
  esp: string,
  what: string,
): z.output<S> {
  const parsed = schema.safeParse(body);
  if (!parsed.success) throw new TransientError(`${esp} answered ${what} in an unexpected shape`);
  return parsed.data;
}

/** An answer read without a schema that trips a TypeError is the same glitch: a TransientError. */
export async function shapeChecked<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof TypeError) {
      throw new TransientError(`the ESP answered with an unexpected shape (${sanitize(err.message)})`);
    }
    throw err;
  }
}
