// Loaded by path (DataConverter.payloadConverterPath) into clients, the worker and the workflow
// bundle. Summaries of runs and of the schedule hold ids, dates and kinds of run, never contacts or
// credentials: they are stored readable, so plain `temporal` commands and a Web UI without the
// codec show them. Every other payload is encrypted as before.
import { defaultPayloadConverter, type Payload, type PayloadConverter } from '@temporalio/common';

/**
 * Marks a converted payload for the encrypting codec, which stores it without the mark: a plain
 * `json/plain` payload is what the Temporal CLI and Web UI show as text.
 */
const READABLE_MARK = 'espresso-readable';
const BRAND = Symbol.for('espresso.readable-text');

/**
 * `text` to be stored readable (a summary); typed as the string the SDK's summary options take. A
 * converter without this module's (another tool's client) still stores the text, encrypted.
 */
export function readable(text: string): string {
  return { [BRAND]: text, toJSON: () => text } as unknown as string;
}

/** A payload marked readable, as it is to be stored (unmarked); undefined for every other payload. */
export function storedReadable(payload: Payload): Payload | undefined {
  if (payload.metadata?.[READABLE_MARK] === undefined) return undefined;
  const { [READABLE_MARK]: _, ...metadata } = payload.metadata;
  return { ...payload, metadata };
}

export const payloadConverter: PayloadConverter = {
  toPayload(value, context, hint) {
    const text = (value as { [BRAND]?: unknown } | null | undefined)?.[BRAND];
    if (typeof text !== 'string') return defaultPayloadConverter.toPayload(value, context, hint);
    const payload = defaultPayloadConverter.toPayload(text);
    return { ...payload, metadata: { ...payload.metadata, [READABLE_MARK]: new Uint8Array([49]) } };
  },
  fromPayload: (payload, context, hint) => defaultPayloadConverter.fromPayload(payload, context, hint),
};
