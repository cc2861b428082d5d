// The publisher's private link to their configuration's page: the configuration id and a version,
// signed with the publisher-link key. The key lives in the secret store (`publisher-link-key`,
// created by the first web server or worker that needs it; concurrent first uses agree on one), so
// every web server checks what any worker's alert or web server's page gave out. Revoking bumps
// the version (a document in the blob store), so every link given out before stops working at once.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { changeJsonDocument, readJsonDocument } from './storage/json-document';
import { NotFoundError, type BlobStore, type SecretStore } from './storage';

/** The secret store entry holding the key that signs publisher links. */
export const PUBLISHER_LINK_KEY_SECRET_ID = 'publisher-link-key';

export type LinkStores = { blobs: BlobStore; secrets: SecretStore };

export class PublisherLinkKeyError extends Error {
  override name = 'PublisherLinkKeyError';
}

const versionKey = (configurationId: string) => `publisher-links/${configurationId}.json`;

// One read per secret store and process: the key never changes once created.
const keys = new WeakMap<SecretStore, Promise<Buffer>>();

function linkKey(secrets: SecretStore): Promise<Buffer> {
  let key = keys.get(secrets);
  if (!key) {
    key = readOrCreateKey(secrets);
    keys.set(secrets, key);
    key.catch(() => keys.delete(secrets)); // a store that was down is asked again next time
  }
  return key;
}

async function readOrCreateKey(secrets: SecretStore): Promise<Buffer> {
  let text: string;
  try {
    text = await secrets.get(PUBLISHER_LINK_KEY_SECRET_ID);
  } catch (err) {
    if (!(err instanceof NotFoundError)) throw err;
    text = await secrets.createIfAbsent(PUBLISHER_LINK_KEY_SECRET_ID, randomBytes(32).toString('base64url'));
  }
  const key = Buffer.from(text.trim(), 'base64url');
  if (key.length !== 32)
    throw new PublisherLinkKeyError(
      `secret ${PUBLISHER_LINK_KEY_SECRET_ID} in ${secrets.description} is not a 32-byte base64url key (delete it to have a new one made; every link given out so far then stops working)`,
    );
  return key;
}

const signature = (key: Buffer, configurationId: string, version: number | string) =>
  createHmac('sha256', key).update(`publisher\n${configurationId}.${version}`).digest('base64url');

export async function linkVersion(blobs: BlobStore, configurationId: string): Promise<number> {
  return (await readJsonDocument<{ version: number }>(blobs, versionKey(configurationId)))?.doc.version ?? 0;
}

/** The path of the page (after the public URL) for the current version. */
export async function publisherPath(stores: LinkStores, configurationId: string): Promise<string> {
  const [key, version] = await Promise.all([
    linkKey(stores.secrets),
    linkVersion(stores.blobs, configurationId),
  ]);
  return `/publisher/${configurationId}/${version}.${signature(key, configurationId, version)}`;
}

/** The whole link, as the success page, the admin page and needs_reauth alerts give it. */
export async function publisherUrl(
  stores: LinkStores,
  publicUrl: string,
  configurationId: string,
): Promise<string> {
  return `${publicUrl}${await publisherPath(stores, configurationId)}`;
}

/** True when `token` is this configuration's link, not revoked. */
export async function linkValid(
  stores: LinkStores,
  configurationId: string,
  token: string,
): Promise<boolean> {
  const parts = /^(\d{1,9})\.([A-Za-z0-9_-]{43})$/.exec(token);
  if (!parts) return false;
  const expected = Buffer.from(signature(await linkKey(stores.secrets), configurationId, parts[1]!));
  const given = Buffer.from(parts[2]!);
  if (expected.length !== given.length || !timingSafeEqual(expected, given)) return false;
  return Number(parts[1]) === (await linkVersion(stores.blobs, configurationId));
}

/** Every link given out so far stops working; the next one shown is new. */
export async function revokeLinks(blobs: BlobStore, configurationId: string): Promise<void> {
  await changeJsonDocument<{ version: number }, void>(blobs, versionKey(configurationId), (doc) => ({
    write: { version: (doc?.version ?? 0) + 1 },
    answer: undefined,
  }));
}
