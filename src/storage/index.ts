import { S3Client } from '@aws-sdk/client-s3';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { AppConfig } from '../config';
import { AwsSecretStore } from './aws-secret-store';
import type { BlobStore } from './blob-store';
import { ConfigurationStore } from './configuration-store';
import { LocalBlobStore } from './local-blob-store';
import { LocalSecretStore } from './local-secret-store';
import { S3BlobStore } from './s3-blob-store';
import type { SecretStore } from './secret-store';

export interface Stores {
  blobs: BlobStore;
  secrets: SecretStore;
  configurations: ConfigurationStore;
}

/** The one place that picks storage adapters from configuration. */
export function createStores(storage: AppConfig['storage']): Stores {
  let blobs: BlobStore;
  let secrets: SecretStore;
  if (storage.kind === 'aws') {
    const common = { region: storage.region, endpoint: storage.endpoint };
    // Emulators and most S3-compatible stores only speak path-style addressing.
    blobs = new S3BlobStore(new S3Client({ ...common, forcePathStyle: !!storage.endpoint }), storage.bucket);
    secrets = new AwsSecretStore(new SecretsManagerClient(common), storage.secretPrefix);
  } else {
    blobs = new LocalBlobStore(storage.blobDir);
    secrets = new LocalSecretStore(storage.secretDir, {
      keys: storage.secretKeys,
      keyFile: storage.secretKeyFile,
    });
  }
  return { blobs, secrets, configurations: new ConfigurationStore(blobs) };
}

export type { BlobStore, StoredBlob } from './blob-store';
export type { SecretStore } from './secret-store';
export * from './errors';
export * from './configuration-store';
