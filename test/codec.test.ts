import { strict as assert } from 'node:assert';
import { defaultPayloadConverter } from '@temporalio/common';
import {
  EncryptionCodec,
  formatPayloadKeys,
  loadPayloadKeys,
  newPayloadKeys,
  parsePayloadKeys,
  PAYLOAD_KEYS_SECRET_ID,
} from '../src/codec';
import { payloadConverter, readable } from '../src/codec/readable-text';
import { loadConfig } from '../src/config';
import { tempStores } from './support/tmp';

const payload = (value: unknown) => defaultPayloadConverter.toPayload(value);
const value = (p: Parameters<typeof defaultPayloadConverter.fromPayload>[0]) =>
  defaultPayloadConverter.fromPayload(p);

describe('payload encryption codec', () => {
  it('round-trips payloads, names the key, and hides the plaintext', async () => {
    const codec = new EncryptionCodec(newPayloadKeys('k1'));
    const secret = { apiKey: 'sk_live_PLAINTEXT_123', email: 'someone@example.com' };
    const [encoded] = await codec.encode([payload(secret)]);
    assert.equal(Buffer.from(encoded!.metadata!.encoding!).toString(), 'binary/encrypted');
    assert.equal(Buffer.from(encoded!.metadata!['encryption-key-id']!).toString(), 'k1');
    assert.ok(!Buffer.from(encoded!.data!).toString('latin1').includes('PLAINTEXT'));
    assert.deepEqual(value((await codec.decode([encoded!]))[0]!), secret);
  });

  it('decodes payloads of an older key after rotation, and passes unencrypted payloads through', async () => {
    const old = newPayloadKeys('k1');
    const [before] = await new EncryptionCodec(old).encode([payload('written before rotation')]);
    const rotated = parsePayloadKeys(
      `k2:${Buffer.alloc(32, 7).toString('base64')},${formatPayloadKeys(old)}`,
    );
    const codec = new EncryptionCodec(rotated);
    const [after] = await codec.encode([payload('after')]);
    assert.equal(Buffer.from(after!.metadata!['encryption-key-id']!).toString(), 'k2');
    const decoded = await codec.decode([before!, after!, payload('plain, from before encryption')]);
    assert.deepEqual(decoded.map(value), [
      'written before rotation',
      'after',
      'plain, from before encryption',
    ]);
  });

  it('refuses unencrypted payloads when told to (workers), naming the cause and the migration setting', async () => {
    const codec = new EncryptionCodec(newPayloadKeys('k1'), { plaintext: 'refuse' });
    const [encoded] = await codec.encode([payload('fine')]);
    assert.deepEqual((await codec.decode([encoded!])).map(value), ['fine']);
    await assert.rejects(
      codec.decode([payload({ apiKey: 'sk_live_PLAINTEXT_123' })]),
      (err: Error) =>
        /refused an unencrypted payload \(encoding "json\/plain"\)/.test(err.message) &&
        err.message.includes('ESPRESSO_ALLOW_PLAINTEXT_PAYLOADS=true') &&
        !err.message.includes('PLAINTEXT_123'),
    );
  });

  it('stores a readable summary as plain JSON, the way the Temporal CLI shows text; workers still refuse plaintext', async () => {
    const codec = new EncryptionCodec(newPayloadKeys('k1'), { plaintext: 'refuse' });
    const summary = payloadConverter.toPayload(readable('manual full sync of cfg_1 for 2026-11-28'));
    const [stored, input] = await codec.encode([summary, payloadConverter.toPayload('not a summary')]);
    assert.deepEqual(stored, payload('manual full sync of cfg_1 for 2026-11-28'));
    assert.equal(Buffer.from(input!.metadata!.encoding!).toString(), 'binary/encrypted');
    // Readable on the way out only: a plaintext payload sent to a worker is refused as before.
    await assert.rejects(codec.decode([stored!]), /refused an unencrypted payload/);
    // Without espresso's converter the summary is still its text.
    assert.equal(value(payload(readable('a summary'))), 'a summary');
  });

  it('refuses tampered payloads and unknown keys with a clear error', async () => {
    const codec = new EncryptionCodec(newPayloadKeys('k1'));
    const [encoded] = await codec.encode([payload('x')]);
    // One byte of the ciphertext flipped (setting it to a fixed value left it as it was 1 time in 256).
    const data = Buffer.from(encoded!.data!);
    data[20] = data[20]! ^ 0xff;
    const tampered = { ...encoded!, data };
    await assert.rejects(codec.decode([tampered]), /failed authentication with key k1/);
    await assert.rejects(
      new EncryptionCodec(newPayloadKeys('other')).decode([encoded!]),
      /key "k1", which is not in/,
    );
  });

  it('parses key rings and names what is wrong', () => {
    const key = Buffer.alloc(32, 1).toString('base64');
    assert.equal(parsePayloadKeys(`a:${key}, b:${key}`).current, 'a');
    assert.throws(() => parsePayloadKeys('a:short'), /entry 1: the key must be 32 bytes/);
    assert.throws(() => parsePayloadKeys(`a:${key},a:${key}`), /entry 2 repeats the key id/);
    assert.throws(() => parsePayloadKeys(`:${key}`), /entry 1 must be <key id>:<base64 key>/);
    assert.throws(
      () => loadConfig({ ESPRESSO_PAYLOAD_KEYS: 'nope' }),
      /ESPRESSO_PAYLOAD_KEYS: expected <key id>/,
    );
  });

  it('creates one key ring in the secret store on first use and reuses it', async () => {
    const { secrets } = await tempStores();
    // The CLI only reads: before the worker's first start it says what is missing.
    await assert.rejects(
      loadPayloadKeys(undefined, secrets),
      /no payload encryption keys: secret payload-keys .* does not exist yet/,
    );
    const create = { create: true };
    const [a, b] = await Promise.all([
      loadPayloadKeys(undefined, secrets, create),
      loadPayloadKeys(undefined, secrets, create),
    ]);
    assert.equal(formatPayloadKeys(a), formatPayloadKeys(b));
    assert.equal(formatPayloadKeys(await loadPayloadKeys(undefined, secrets)), formatPayloadKeys(a));
    assert.ok((await secrets.list()).includes(PAYLOAD_KEYS_SECRET_ID));
    const fromEnv = `env:${Buffer.alloc(32, 2).toString('base64')}`;
    assert.equal((await loadPayloadKeys(fromEnv, secrets)).current, 'env');
  });
});
