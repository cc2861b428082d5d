import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { chmod, link, mkdir, open, readdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { assertValidKey, CorruptDataError, NotFoundError } from './errors';
import { isNotFound } from './local-blob-store';
import type { SecretStore } from './secret-store';

const MAGIC = Buffer.from('ESP1');
const IV_BYTES = 12;
const TAG_BYTES = 16;
/** Encrypted with the store key; proves at write time that the key is the one older secrets used. */
const KEY_CHECK = '.key-check';

/**
 * Secrets as one AES-256-GCM file each under `<dir>`: `ESP1 | iv | tag | ciphertext`, with the
 * secret id as additional authenticated data so a file copied under another id does not decrypt.
 * Writes go to a temp file and are renamed, so a crash never leaves half a secret behind.
 */
export class LocalSecretStore implements SecretStore {
  readonly description: string;
  private key?: Buffer;

  constructor(
    private readonly dir: string,
    private readonly keySource: { key?: Buffer; keyFile: string },
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
    return this.decrypt(id, data, await this.storeKey());
  }

  async put(id: string, value: string): Promise<void> {
    const file = this.file(id);
    const key = await this.storeKey();
    await this.verifyKey(key);
    await this.writeAtomic(file, this.encrypt(id, value, key));
  }

  async createIfAbsent(id: string, value: string): Promise<string> {
    const file = this.file(id);
    const key = await this.storeKey();
    await this.verifyKey(key);
    const tmp = await this.writeTemp(file, this.encrypt(id, value, key));
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

  private encrypt(id: string, value: string, key: Buffer): Buffer {
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', key, iv);
    cipher.setAAD(Buffer.from(id));
    const ciphertext = Buffer.concat([cipher.update(value, 'utf8'), cipher.final()]);
    return Buffer.concat([MAGIC, iv, cipher.getAuthTag(), ciphertext]);
  }

  private decrypt(id: string, data: Buffer, key: Buffer): string {
    if (data.length < MAGIC.length + IV_BYTES + TAG_BYTES || !data.subarray(0, MAGIC.length).equals(MAGIC)) {
      throw new CorruptDataError('secret', id, 'the file is truncated or not an espresso secret file');
    }
    const iv = data.subarray(MAGIC.length, MAGIC.length + IV_BYTES);
    const tag = data.subarray(MAGIC.length + IV_BYTES, MAGIC.length + IV_BYTES + TAG_BYTES);
    const decipher = createDecipheriv('aes-256-gcm', key, iv);
    decipher.setAAD(Buffer.from(id));
    decipher.setAuthTag(tag);
    try {
      return Buffer.concat([
        decipher.update(data.subarray(MAGIC.length + IV_BYTES + TAG_BYTES)),
        decipher.final(),
      ]).toString('utf8');
    } catch {
      throw new CorruptDataError(
        'secret',
        id,
        'authentication failed (the file was modified, or the store key is not the one it was written with)',
      );
    }
  }

  private async verifyKey(key: Buffer): Promise<void> {
    const checkFile = join(this.dir, KEY_CHECK);
    try {
      this.decrypt(KEY_CHECK, await readFile(checkFile), key);
    } catch (err) {
      if (isNotFound(err)) {
        await this.writeAtomic(checkFile, this.encrypt(KEY_CHECK, 'espresso', key));
        return;
      }
      throw new Error(
        `the secret store key does not match the one used for the secrets in ${this.dir}; refusing to write (check ESPRESSO_SECRET_KEY or the key file)`,
      );
    }
  }

  private async storeKey(): Promise<Buffer> {
    if (this.key) return this.key;
    if (this.keySource.key) return (this.key = this.keySource.key);
    const keyFile = this.keySource.keyFile;
    try {
      const encoded = (await readFile(keyFile, 'utf8')).trim();
      const key = Buffer.from(encoded, 'base64');
      if (key.length !== 32) throw new Error(`secret key file ${keyFile} does not hold a 32-byte base64 key`);
      return (this.key = key);
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
    if ((await this.secretFiles()).length > 0) {
      throw new Error(
        `secret key file ${keyFile} is missing but ${this.dir} holds secrets: restore the key file or set ESPRESSO_SECRET_KEY`,
      );
    }
    const key = randomBytes(32);
    await mkdir(this.dir, { recursive: true });
    try {
      const handle = await open(keyFile, 'wx', 0o600);
      await handle.writeFile(key.toString('base64') + '\n');
      await handle.close();
    } catch (err) {
      // Another process created it first: use theirs.
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') return this.storeKey();
      throw err;
    }
    return (this.key = key);
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
