// Payload encryption for everything espresso sends through Temporal: workflow and activity inputs
// and results, signals, queries, heartbeat details, memos, and failure messages. AES-256-GCM; each
// payload names the key that encrypted it, so keys rotate without re-encrypting history.
import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto';
import type { DataConverter, Payload, PayloadCodec } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import { formatKeyRing, parseKeyRing, type KeyRing } from '../lib/key-ring';
import { NotFoundError, type SecretStore } from '../storage';
import { storedReadable } from './readable-text';

export const ENCRYPTED_ENCODING = 'binary/encrypted';
const KEY_ID_METADATA = 'encryption-key-id';
const IV_BYTES = 12;
const TAG_BYTES = 16;
/** The secret store entry holding the key ring when ESPRESSO_PAYLOAD_KEYS is not set. */
export const PAYLOAD_KEYS_SECRET_ID = 'payload-keys';

/** Keys by id; `current` encrypts, every key decrypts. */
export type PayloadKeys = KeyRing;

export class PayloadKeysError extends Error {
  override name = 'PayloadKeysError';
}

/** Parses `id:base64key[,id:base64key...]`; the first key encrypts. */
export function parsePayloadKeys(text: string, source = 'ESPRESSO_PAYLOAD_KEYS'): PayloadKeys {
  return parseKeyRing(text, source);
}

export const formatPayloadKeys = formatKeyRing;

export function newPayloadKeys(
  id = `k${new Date().toISOString().slice(0, 10).replace(/-/g, '')}`,
): PayloadKeys {
  return { current: id, keys: new Map([[id, randomBytes(32)]]) };
}

/**
 * The key ring: ESPRESSO_PAYLOAD_KEYS when set, else the secret store's `payload-keys` entry. The
 * worker and the web server create that entry with a fresh key on their first start (`create`;
 * concurrent first starts agree on one key); the CLI only reads it, so a shell pointed at the wrong
 * store fails clearly instead of starting runs with a key the worker does not have.
 */
export async function loadPayloadKeys(
  env: string | undefined,
  secrets: SecretStore,
  options: { create: boolean } = { create: false },
): Promise<PayloadKeys> {
  if (env) return parsePayloadKeys(env);
  const source = payloadKeysSource(env, secrets);
  let stored: string;
  try {
    stored = await secrets.get(PAYLOAD_KEYS_SECRET_ID);
  } catch (err) {
    if (!(err instanceof NotFoundError)) throw err;
    if (!options.create) {
      throw new PayloadKeysError(
        `no payload encryption keys: ${source} does not exist yet (the worker creates it at its first start; or set ESPRESSO_PAYLOAD_KEYS like the worker's)`,
      );
    }
    stored = await secrets.createIfAbsent(PAYLOAD_KEYS_SECRET_ID, formatPayloadKeys(newPayloadKeys()));
  }
  return parsePayloadKeys(stored, source);
}

/** Where the ring comes from, for messages: the environment variable or the secret store entry. */
export function payloadKeysSource(env: string | undefined, secrets: SecretStore): string {
  return env ? 'ESPRESSO_PAYLOAD_KEYS' : `secret ${PAYLOAD_KEYS_SECRET_ID} in ${secrets.description}`;
}

/** Replaces the secret store's ring (the `keys` commands; processes read it at their next start). */
export async function savePayloadKeys(secrets: SecretStore, keys: PayloadKeys): Promise<void> {
  await secrets.put(PAYLOAD_KEYS_SECRET_ID, formatPayloadKeys(keys));
}

/** The id of the key that encrypted a payload (read without decrypting); undefined when it is not encrypted. */
export function payloadKeyId(payload: Payload): string | undefined {
  if (text(payload.metadata?.encoding) !== ENCRYPTED_ENCODING) return undefined;
  return text(payload.metadata?.[KEY_ID_METADATA]) ?? '';
}

/** The worker setting that lets unencrypted payloads through, for migrations only. */
export const ALLOW_PLAINTEXT_SETTING = 'ESPRESSO_ALLOW_PLAINTEXT_PAYLOADS';

export interface CodecOptions {
  /**
   * What decoding does with a payload that is not encrypted: `pass` it on as it is (readers: the
   * Web UI's codec endpoint, clients reading old histories), or `refuse` it (workers: whoever can
   * reach Temporal's frontend must not start runs of their choosing without the key).
   */
  plaintext: 'pass' | 'refuse';
}

/** AES-256-GCM over the whole serialized payload (data and metadata); the key id is authenticated. */
export class EncryptionCodec implements PayloadCodec {
  constructor(
    private readonly keys: PayloadKeys,
    private readonly options: CodecOptions = { plaintext: 'pass' },
  ) {
    if (!keys.keys.has(keys.current))
      throw new PayloadKeysError(`the current key ${keys.current} is not in the ring`);
  }

  async encode(payloads: Payload[]): Promise<Payload[]> {
    const id = this.keys.current;
    const key = this.keys.keys.get(id)!;
    return payloads.map((payload) => {
      const readable = storedReadable(payload); // a summary (readable-text.ts)
      if (readable) return readable;
      const plain = temporal.api.common.v1.Payload.encode(payload).finish();
      const iv = randomBytes(IV_BYTES);
      const cipher = createCipheriv('aes-256-gcm', key, iv);
      cipher.setAAD(Buffer.from(id));
      const data = Buffer.concat([iv, cipher.update(plain), cipher.final(), cipher.getAuthTag()]);
      return {
        metadata: { encoding: Buffer.from(ENCRYPTED_ENCODING), [KEY_ID_METADATA]: Buffer.from(id) },
        data,
      };
    });
  }

  async decode(payloads: Payload[]): Promise<Payload[]> {
    return payloads.map((payload) => {
      const encoding = text(payload.metadata?.encoding);
      if (encoding !== ENCRYPTED_ENCODING) {
        if (this.options.plaintext === 'pass') return payload;
        throw new PayloadKeysError(
          `refused an unencrypted payload (encoding ${JSON.stringify(encoding ?? '')}): workers run only what espresso's codec encrypted. ` +
            `Start runs with espresso's commands, or with temporal --codec-endpoint; ${ALLOW_PLAINTEXT_SETTING}=true lets plaintext through while migrating histories written before encryption`,
        );
      }
      const id = text(payload.metadata?.[KEY_ID_METADATA]);
      const key = id ? this.keys.keys.get(id) : undefined;
      if (!key) {
        throw new PayloadKeysError(
          `payload encrypted with key ${JSON.stringify(id ?? '')}, which is not in this process's key ring`,
        );
      }
      const data = Buffer.from(payload.data ?? []);
      if (data.length < IV_BYTES + TAG_BYTES) throw new PayloadKeysError('encrypted payload is truncated');
      const decipher = createDecipheriv('aes-256-gcm', key, data.subarray(0, IV_BYTES));
      decipher.setAAD(Buffer.from(id!));
      decipher.setAuthTag(data.subarray(data.length - TAG_BYTES));
      let plain: Buffer;
      try {
        plain = Buffer.concat([
          decipher.update(data.subarray(IV_BYTES, data.length - TAG_BYTES)),
          decipher.final(),
        ]);
      } catch {
        throw new PayloadKeysError(`encrypted payload failed authentication with key ${id}`);
      }
      return temporal.api.common.v1.Payload.decode(plain) as Payload;
    });
  }
}

/** The codec server path segment that authorizes codec calls without a header (the dev UI cannot send one). */
export function codecPathToken(sessionSecret: string): string {
  return createHmac('sha256', sessionSecret).update('espresso temporal-ui codec').digest('base64url');
}

/** Where the Web UI should send payloads: `<public url>/codec/<token>`. */
export function codecEndpoint(publicUrl: string, sessionSecret: string): string {
  return `${publicUrl.replace(/\/$/, '')}/codec/${codecPathToken(sessionSecret)}`;
}

/** The data converter every espresso client and worker uses (workers refuse plaintext). */
export function dataConverter(keys: PayloadKeys, options?: CodecOptions): DataConverter {
  return {
    payloadCodecs: [new EncryptionCodec(keys, options)],
    failureConverterPath: require.resolve('./failure-converter'),
    payloadConverterPath: require.resolve('./readable-text'),
  };
}

function text(bytes: Uint8Array | null | undefined): string | undefined {
  return bytes ? Buffer.from(bytes).toString('utf8') : undefined;
}
