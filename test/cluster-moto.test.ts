// The cluster's moto keeps its state across restarts by replaying its recording (docs/operations.md,
// "Data"). These tests start the cluster's own moto process twice on one recording.
import assert from 'node:assert/strict';
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { S3Client } from '@aws-sdk/client-s3';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { motoProcess, prepareMoto } from '../src/cluster/moto';
import { Supervised } from '../src/lib/supervise';
import { AwsSecretStore } from '../src/storage/aws-secret-store';
import { S3BlobStore } from '../src/storage/s3-blob-store';
import { motoCredentials } from './support/moto';
import { freePort } from './support/ports';
import { tempDir } from './support/tmp';

const BUCKET = 'espresso-moto-test';
const OBJECT_BYTES = 200_000;

describe("the cluster's moto (docs/operations.md, Data)", function () {
  this.timeout(120_000);
  let dir: string;
  let recording: string;
  let port: number;
  let moto: Supervised | undefined;
  let stopping = false;
  let blobs: S3BlobStore;
  let secrets: AwsSecretStore;

  before(async () => {
    dir = await tempDir();
    recording = join(dir, 'moto-recording.jsonl');
    port = await freePort();
    const s3 = new S3Client({
      endpoint: `http://127.0.0.1:${port}`,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: motoCredentials,
    });
    blobs = new S3BlobStore(s3, BUCKET);
    const endpoint = `http://127.0.0.1:${port}`;
    secrets = new AwsSecretStore(
      new SecretsManagerClient({ endpoint, region: 'us-east-1', credentials: motoCredentials }),
      'espresso-moto-test/',
    );
  });
  afterEach(() => stop());

  async function start(): Promise<string[]> {
    const spec = motoProcess(port, BUCKET, recording, join(dir, 'moto.log'), join(dir, 'moto.pid'));
    const said: string[] = [];
    const log = console.log;
    console.log = (line: string) => said.push(line);
    try {
      stopping = false;
      moto = new Supervised(spec, () => stopping);
      await prepareMoto(`http://127.0.0.1:${port}`, recording, BUCKET);
    } finally {
      console.log = log;
    }
    return said;
  }

  async function stop(): Promise<void> {
    stopping = true;
    await moto?.stop();
  }

  const keys = Array.from({ length: 40 }, (_, i) => `runs/2026-12-04/chunk-${i}.jsonl`);
  const bodyOf = (i: number) => `${i}`.padEnd(OBJECT_BYTES, '.');

  /** The keys whose object is missing or not what was written. */
  async function lost(): Promise<string[]> {
    const missing: string[] = [];
    for (const [i, key] of keys.entries()) {
      const got = await blobs.get(key).catch(() => undefined);
      if (got?.body.toString() !== bodyOf(i)) missing.push(key);
    }
    return missing;
  }

  it('keeps every object of 40 large writes at once and a secret across a restart, and records no reads', async () => {
    await start();
    await Promise.all(keys.map((key, i) => blobs.put(key, bodyOf(i))));
    assert.deepEqual(await lost(), []);
    await secrets.put('credentials-1', 'first');
    await secrets.put('credentials-1', 'second');
    for (let i = 0; i < 5; i++) assert.equal(await secrets.get('credentials-1'), 'second');
    // Reads are not recorded: the recording holds what changed state.
    const lines = readFileSync(recording, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line) as { method: string; headers: Record<string, string> });
    const methods = lines.map((l) => l.method);
    assert.ok(methods.filter((m) => m === 'PUT').length >= 41, methods.join(' '));
    assert.deepEqual(
      methods.filter((m) => m === 'GET' || m === 'HEAD'),
      [],
    );
    const secretCalls = lines.map((l) => l.headers['X-Amz-Target']).filter((t) => t !== undefined);
    assert.ok(secretCalls.includes('secretsmanager.CreateSecret'), secretCalls.join(' '));
    assert.equal(secretCalls.includes('secretsmanager.GetSecretValue'), false, secretCalls.join(' '));
    await stop();

    const said = await start();
    assert.ok(
      said.some((line) => /moto: replayed \d+ recorded requests/.test(line)),
      said.join('\n'),
    );
    assert.deepEqual(await lost(), []);
    assert.equal(await secrets.get('credentials-1'), 'second');
  });

  it('sets aside a line cut off by a crash, says so, and replays the rest', async () => {
    const before = readFileSync(recording, 'utf8').split('\n').filter(Boolean).length;
    const cut = JSON.stringify({ method: 'PUT', url: `http://127.0.0.1:${port}/${BUCKET}/cut` }).slice(0, 40);
    appendFileSync(recording, cut);

    const said = await start();
    assert.ok(
      said.some((line) =>
        line.includes(`set aside 1 unreadable line(s) of ${recording} (line ${before + 1}`),
      ),
      said.join('\n'),
    );
    const aside = join(dir, 'moto-recording.unreadable.jsonl');
    assert.ok(existsSync(aside));
    assert.equal(readFileSync(aside, 'utf8'), `${cut}\n`);
    assert.deepEqual(await lost(), []);
  });
});
