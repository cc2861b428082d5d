import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { chmod, link, mkdir, open, readdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { createFileOnce } from '../lib/key-file';
import { KEY_ID, KeyRingError, parseKeyRing, type KeyRing } from '../lib/key-ring';
import { assertValidKey, CorruptDataError, NotFoundError } from './errors';
import { isNotFound } from './local-blob-store';
import type { SecretStore } from './secret-store';

/** `ESP1 | iv | tag | ciphertext`: written with a key that has no id (a single base64 key). */
const UNNAMED_MAGIC = Buffer.from('ESP1');
/** `ESP2 | key id length | key id | iv | tag | ciphertext`: written with a key of a key ring. */
const NAMED_MAGIC = Buffer.from('ESP2');
const IV_BYTES = 12;
const TAG_BYTES = 16;
/** The id of a key given alone, as before key rings. */
const UNNAMED_KEY = '';
/** Encrypted with the store key; proves at write time that the key is the one older secrets used. */
const KEY_CHECK = '.key-check';

/**
 * ESPRESSO_SECRET_KEY or the key file: a single base64 key (its files name no key, as before key
 * rings), or a key ring `<key id>:<base64 key>,...` whose first key encrypts.
 */
export function parseSecretKeys(text: string, source: string): KeyRing {
  if (text.includes(':')) return parseKeyRing(text, source);
  const key = Buffer.from(text.trim(), 'base64');
  if (key.length !== 32) {
    throw new KeyRingError(
      source,
      'must be 32 bytes, base64-encoded, or a key ring <key id>:<base64 key>,... (the first encrypting)',
    );
  }
  return { current: UNNAMED_KEY, keys: new Map([[UNNAMED_KEY, key]]) };
}

/** For messages: "key a", or "the unnamed key" (a single base64 key, and what it encrypted). */
export function keyName(id: string): string {
  return id === UNNAMED_KEY ? 'the unnamed key' : `key ${id}`;
}

/** Which keys the store's files (its secrets and its key check) are encrypted with. */
export interface SecretKeyUsage {
  /** Where the keys come from: ESPRESSO_SECRET_KEY or the key file. */
  source: string;
  current: string;
  /** Files under another key than the current one, counted by key id. */
  older: Map<string, number>;
  /** The keys of the ring besides the current one. */
  others: string[];
}

/**
 * Secrets as one AES-256-GCM file each under `<dir>`, with the secret id (and the file's header)
 * as additional authenticated data so a file copied under another id does not decrypt. A file
 * written with a ring key names it, so the key rotates: `rekey` moves every file to the current key.
 * Writes go to a temp file and are renamed, so a crash never leaves half a secret behind.
 */
export class LocalSecretStore implements SecretStore {
  readonly description: string;
  private keys?: KeyRing;

  constructor(
    private readonly dir: string,
    private readonly keySource: { keys?: KeyRing; keyFile: string },
  ) {
    this.description = `local encrypted directory ${dir}`;
  }

  async get(id: string): Promise<string> {
    const file = this.file(id);
    let data: Buffer;
    try {
      data = await readFile(file);
    } catch (err) {
      if (isNotFound(err)) throw new NotFoundError('secret', id);
      throw err;
    }
    return this.decrypt(id, data, await this.storeKeys());
  }

  async put(id: string, value: string): Promise<void> {
    const file = this.file(id);
    const keys = await this.storeKeys();
    await this.verifyKeys(keys);
    await this.writeAtomic(file, this.encrypt(id, value, keys));
  }

  async createIfAbsent(id: string, value: string): Promise<string> {
    const file = this.file(id);
    const keys = await this.storeKeys();
    await this.verifyKeys(keys);
    const tmp = await this.writeTemp(file, this.encrypt(id, value, keys));
    try {
      // link() fails when the target exists: the first creator wins, atomically.
      await link(tmp, file);
      return value;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      return this.get(id);
    } finally {
      await rm(tmp, { force: true });
    }
  }

  async delete(id: string): Promise<void> {
    await rm(this.file(id), { force: true });
  }

  async list(): Promise<string[]> {
    return (await this.secretFiles()).map((name) => decodeURIComponent(name.slice(0, -'.enc'.length))).sort();
  }

  async keyUsage(): Promise<SecretKeyUsage> {
    const keys = await this.storeKeys();
    const older = new Map<string, number>();
    for (const { file } of await this.sealedFiles()) {
      const data = await readIfPresent(file);
      // Unreadable files are not a key's: reading or re-encrypting them names them.
      const keyId = data && tryHeader(data)?.keyId;
      if (keyId === undefined || keyId === keys.current) continue;
      older.set(keyId, (older.get(keyId) ?? 0) + 1);
    }
    return {
      source: this.keySourceName(),
      current: keys.current,
      older,
      others: [...keys.keys.keys()].filter((id) => id !== keys.current),
    };
  }

  /**
   * Re-encrypts every file under another key with the current one, one file at a time (temp file
   * and rename), the key check last. Files it cannot read are reported and left as they are.
   */
  async rekey(): Promise<{ reencrypted: number; failed: Array<{ id: string; reason: string }> }> {
    const keys = await this.storeKeys();
    await this.verifyKeys(keys);
    let reencrypted = 0;
    const failed: Array<{ id: string; reason: string }> = [];
    for (const { id, file } of await this.sealedFiles()) {
      try {
        if (await this.rekeyFile(id, file, keys)) reencrypted++;
      } catch (err) {
        if (!(err instanceof CorruptDataError || err instanceof KeyRingError)) throw err;
        failed.push({ id, reason: err.message });
      }
    }
    return { reencrypted, failed };
  }

  private async rekeyFile(id: string, file: string, keys: KeyRing): Promise<boolean> {
    const data = await readIfPresent(file);
    if (!data || header(id, data).keyId === keys.current) return false;
    const tmp = await this.writeTemp(file, this.encrypt(id, this.decrypt(id, data, keys), keys));
    try {
      // A secret written (under the current key) or deleted meanwhile stays as the writer left it.
      if (!(await readIfPresent(file))?.equals(data)) return false;
      await rename(tmp, file);
      return true;
    } finally {
      await rm(tmp, { force: true });
    }
  }

  private file(id: string): string {
    assertValidKey('secret', id);
    return join(this.dir, `${encodeURIComponent(id)}.enc`);
  }

  private async secretFiles(): Promise<string[]> {
    try {
      return (await readdir(this.dir)).filter((n) => n.endsWith('.enc') && !n.startsWith('.'));
    } catch (err) {
      if (isNotFound(err)) return [];
      throw err;
    }
  }

  /** Every file encrypted with the store key: the secrets, then the key check. */
  private async sealedFiles(): Promise<Array<{ id: string; file: string }>> {
    return [
      ...(await this.secretFiles()).map((name) => ({
        id: decodeURIComponent(name.slice(0, -'.enc'.length)),
        file: join(this.dir, name),
      })),
      { id: KEY_CHECK, file: join(this.dir, KEY_CHECK) },
    ];
  }

  private encrypt(id: string, value: string, keys: KeyRing): Buffer {
    const keyId = keys.current;
    const head =
      keyId === UNNAMED_KEY
        ? UNNAMED_MAGIC
        : Buffer.concat([NAMED_MAGIC, Buffer.from([keyId.length]), Buffer.from(keyId)]);
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', keys.keys.get(keyId)!, iv);
    cipher.setAAD(additionalData(id, keyId, head));
    const ciphertext = Buffer.concat([cipher.update(value, 'utf8'), cipher.final()]);
    return Buffer.concat([head, iv, cipher.getAuthTag(), ciphertext]);
  }

  private decrypt(id: string, data: Buffer, keys: KeyRing): string {
    const { keyId, head } = header(id, data);
    let candidates: Buffer[];
    if (keyId === UNNAMED_KEY) {
      // Written before key rings, with the one key there was: whichever key of the ring it was.
      candidates = [...keys.keys.values()];
    } else {
      const key = keys.keys.get(keyId);
      if (!key) {
        throw new KeyRingError(
          this.keySourceName(),
          `secret ${id} was encrypted with key ${keyId}, which is not in it: add ${keyId}:<its base64 key> back`,
        );
      }
      candidates = [key];
    }
    const iv = data.subarray(head.length, head.length + IV_BYTES);
    const tag = data.subarray(head.length + IV_BYTES, head.length + IV_BYTES + TAG_BYTES);
    const ciphertext = data.subarray(head.length + IV_BYTES + TAG_BYTES);
    for (const key of candidates) {
      const decipher = createDecipheriv('aes-256-gcm', key, iv);
      decipher.setAAD(additionalData(id, keyId, head));
      decipher.setAuthTag(tag);
      try {
        return Buffer.concat([decipher.update(ciphertext), decipher.final()]).toString('utf8');
      } catch {
        // the next candidate, if any
      }
    }
    throw new CorruptDataError(
      'secret',
      id,
      'authentication failed (the file was modified, or no store key is the one it was written with)',
    );
  }

  /** Refuses keys none of which wrote the store's earlier secrets; the first write records the key. */
  private async verifyKeys(keys: KeyRing): Promise<void> {
    const checkFile = join(this.dir, KEY_CHECK);
    const data = await readIfPresent(checkFile);
    if (!data) {
      await this.writeAtomic(checkFile, this.encrypt(KEY_CHECK, 'espresso', keys));
      return;
    }
    try {
      this.decrypt(KEY_CHECK, data, keys);
    } catch {
      throw new Error(
        `the secret store key does not match the one used for the secrets in ${this.dir}; refusing to write (no key in ${this.keySourceName()} decrypts its ${KEY_CHECK} file)`,
      );
    }
  }

  private keySourceName(): string {
    return this.keySource.keys ? 'ESPRESSO_SECRET_KEY' : `secret key file ${this.keySource.keyFile}`;
  }

  private async storeKeys(): Promise<KeyRing> {
    if (this.keys) return this.keys;
    if (this.keySource.keys) return (this.keys = this.keySource.keys);
    const keyFile = this.keySource.keyFile;
    const text = await readIfPresent(keyFile);
    if (text) return (this.keys = parseSecretKeys(text.toString('utf8'), this.keySourceName()));
    if ((await this.secretFiles()).length > 0) {
      throw new Error(
        `secret key file ${keyFile} is missing but ${this.dir} holds secrets: restore the key file or set ESPRESSO_SECRET_KEY`,
      );
    }
    // Of concurrent first uses, the first key file written wins; the others read it.
    const written = await createFileOnce(keyFile, randomBytes(32).toString('base64') + '\n');
    return (this.keys = parseSecretKeys(written, this.keySourceName()));
  }

  private async writeAtomic(file: string, data: Buffer): Promise<void> {
    await rename(await this.writeTemp(file, data), file);
  }

  private async writeTemp(file: string, data: Buffer): Promise<string> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const tmp = `${file}.${process.pid}-${randomBytes(6).toString('hex')}.tmp`;
    const handle = await open(tmp, 'w', 0o600);
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await chmod(tmp, 0o600);
    return tmp;
  }
}

/** The key id a file names and its header (magic, and the key id for ring keys). */
function header(id: string, data: Buffer): { keyId: string; head: Buffer } {
  const found = tryHeader(data);
  if (!found)
    throw new CorruptDataError('secret', id, 'the file is truncated or not an espresso secret file');
  return found;
}

function tryHeader(data: Buffer): { keyId: string; head: Buffer } | undefined {
  const magic = data.subarray(0, 4);
  let head: Buffer;
  let keyId: string;
  if (magic.equals(UNNAMED_MAGIC)) {
    head = magic;
    keyId = UNNAMED_KEY;
  } else if (magic.equals(NAMED_MAGIC) && data.length > 4) {
    head = data.subarray(0, 5 + data[4]!);
    keyId = head.subarray(5).toString('latin1');
    if (!KEY_ID.test(keyId)) return undefined;
  } else {
    return undefined;
  }
  return data.length < head.length + IV_BYTES + TAG_BYTES ? undefined : { keyId, head };
}

/** The secret id; for ring keys also the header, so the key id a file names cannot be changed. */
function additionalData(id: string, keyId: string, head: Buffer): Buffer {
  return keyId === UNNAMED_KEY ? Buffer.from(id) : Buffer.concat([head, Buffer.from(id)]);
}

async function readIfPresent(file: string): Promise<Buffer | undefined> {
  try {
    return await readFile(file);
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}
