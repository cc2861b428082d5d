import {
  DeleteObjectCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import type { Readable } from 'node:stream';
import type { BlobStore, PutOptions, StoredBlob } from './blob-store';
import { assertValidKey, ConflictError, NotFoundError } from './errors';
import { lineBatches } from './lines';

/** Blob store on S3 or any S3-compatible service (conditional writes need If-Match/If-None-Match support). */
export class S3BlobStore implements BlobStore {
  readonly description: string;

  constructor(
    private readonly s3: S3Client,
    private readonly bucket: string,
  ) {
    this.description = `s3://${bucket}`;
  }

  async put(key: string, body: Buffer | string, options: PutOptions = {}): Promise<{ etag: string }> {
    assertValidKey('blob', key);
    try {
      const out = await this.s3.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: key,
          Body: body,
          ContentType: options.contentType,
          IfMatch: options.ifMatch,
          IfNoneMatch: options.ifNoneMatch,
        }),
      );
      return { etag: out.ETag ?? '' };
    } catch (err) {
      // 412: the precondition failed; 409: another conditional write to the key was in progress.
      if (statusOf(err) === 412 || statusOf(err) === 409) throw new ConflictError('blob', key);
      throw err;
    }
  }

  async get(key: string): Promise<StoredBlob> {
    assertValidKey('blob', key);
    try {
      const out = await this.s3.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
      const body = Buffer.from(await out.Body!.transformToByteArray());
      return { body, etag: out.ETag ?? '' };
    } catch (err) {
      if (statusOf(err) === 404) throw new NotFoundError('blob', key);
      throw err;
    }
  }

  async list(prefix: string): Promise<string[]> {
    const keys: string[] = [];
    let token: string | undefined;
    do {
      const out = await this.s3.send(
        new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, ContinuationToken: token }),
      );
      for (const item of out.Contents ?? []) if (item.Key) keys.push(item.Key);
      token = out.IsTruncated ? out.NextContinuationToken : undefined;
    } while (token);
    return keys.sort();
  }

  async listPage(prefix: string, page: { after?: string; limit: number }): Promise<string[]> {
    const out = await this.s3.send(
      new ListObjectsV2Command({
        Bucket: this.bucket,
        Prefix: prefix,
        StartAfter: page.after,
        MaxKeys: page.limit,
      }),
    );
    return (out.Contents ?? []).flatMap((item) => (item.Key ? [item.Key] : [])).sort();
  }

  async delete(key: string): Promise<void> {
    assertValidKey('blob', key);
    await this.s3.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }));
  }

  async *readLines(key: string): AsyncIterable<string> {
    for await (const batch of this.readLineBatches(key)) yield* batch;
  }

  async *readLineBatches(key: string): AsyncIterable<string[]> {
    assertValidKey('blob', key);
    let body: Readable;
    try {
      const out = await this.s3.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
      body = out.Body as Readable;
    } catch (err) {
      if (statusOf(err) === 404) throw new NotFoundError('blob', key);
      throw err;
    }
    try {
      yield* lineBatches(body);
    } finally {
      body.destroy();
    }
  }
}

function statusOf(err: unknown): number | undefined {
  return err instanceof S3ServiceException ? err.$metadata.httpStatusCode : undefined;
}
