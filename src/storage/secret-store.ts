/**
 * Credentials, keyed by configuration id. Values are opaque strings (JSON for credentials).
 * Missing ids throw NotFoundError; unreadable ones CorruptDataError.
 */
export interface SecretStore {
  readonly description: string;
  get(id: string): Promise<string>;
  put(id: string, value: string): Promise<void>;
  /** Stores `value` unless the id exists; returns what is stored afterwards (concurrent creators agree). */
  createIfAbsent(id: string, value: string): Promise<string>;
  /** Deleting a missing id is not an error. */
  delete(id: string): Promise<void>;
  list(): Promise<string[]>;
}
