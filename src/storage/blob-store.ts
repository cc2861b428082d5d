export interface PutOptions {
  /** Write only if the stored object still has this ETag. */
  ifMatch?: string;
  /** Write only if no object exists under the key. */
  ifNoneMatch?: '*';
  contentType?: string;
}

export interface StoredBlob {
  body: Buffer;
  etag: string;
}

/**
 * Object storage for configurations and run files. Keys are `/`-separated paths
 * (see docs/storage.md). Missing keys throw NotFoundError; lost conditional writes throw ConflictError.
 */
export interface BlobStore {
  readonly description: string;
  put(key: string, body: Buffer | string, options?: PutOptions): Promise<{ etag: string }>;
  get(key: string): Promise<StoredBlob>;
  /** Keys under a prefix, in lexicographic order. */
  list(prefix: string): Promise<string[]>;
  /** At most `limit` keys under a prefix that sort after `after`, in lexicographic order: one page. */
  listPage(prefix: string, page: { after?: string; limit: number }): Promise<string[]>;
  /** Deleting a missing key is not an error. */
  delete(key: string): Promise<void>;
  /** Streams an object line by line without loading it whole. Empty trailing line is skipped. */
  readLines(key: string): AsyncIterable<string>;
  /** The same lines, a batch at a time (what one read brought): for files of many lines. */
  readLineBatches(key: string): AsyncIterable<string[]>;
}
