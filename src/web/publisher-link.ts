// The publisher's private link to their configuration's page: the configuration id and a version,
// signed with the session secret. Revoking bumps the version (a document in the blob store, read
// by every web server), so every link given out before stops working at once.
import { changeJsonDocument, readJsonDocument } from '../storage/json-document';
import type { BlobStore } from '../storage';
import type { Signer } from './security';

const versionKey = (configurationId: string) => `publisher-links/${configurationId}.json`;

export async function linkVersion(blobs: BlobStore, configurationId: string): Promise<number> {
  return (await readJsonDocument<{ version: number }>(blobs, versionKey(configurationId)))?.doc.version ?? 0;
}

/** The path of the page (after the public URL) for the current version. */
export async function publisherPath(
  blobs: BlobStore,
  signer: Signer,
  configurationId: string,
): Promise<string> {
  const version = await linkVersion(blobs, configurationId);
  return `/publisher/${configurationId}/${version}.${signer.sign('publisher', `${configurationId}.${version}`)}`;
}

/** True when `token` is this configuration's link, not revoked. */
export async function linkValid(
  blobs: BlobStore,
  signer: Signer,
  configurationId: string,
  token: string,
): Promise<boolean> {
  const parts = /^(\d{1,9})\.([A-Za-z0-9_-]{43})$/.exec(token);
  if (!parts || !signer.verify('publisher', `${configurationId}.${parts[1]}`, parts[2]!)) return false;
  return Number(parts[1]) === (await linkVersion(blobs, configurationId));
}

/** Every link given out so far stops working; the next one shown is new. */
export async function revokeLinks(blobs: BlobStore, configurationId: string): Promise<void> {
  await changeJsonDocument<{ version: number }, void>(blobs, versionKey(configurationId), (doc) => ({
    write: { version: (doc?.version ?? 0) + 1 },
    answer: undefined,
  }));
}
