/**
 * Credentials, keyed by configuration id. Values are opaque strings (JSON for credentials).
 * Missing ids throw NotFoundError; unreadable ones CorruptDataError.
 */
export interface SecretStore {
  readonly description: string;
  get(id: string): Promise<string>;
  put(id: string, value: string): Promise<void>;
  /** Deleting a missing id is not an error. */
  delete(id: string): Promise<void>;
  list(): Promise<string[]>;
}
