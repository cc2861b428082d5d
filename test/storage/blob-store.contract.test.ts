import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { readdir, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import type { BlobStore } from '../../src/storage';
import { ConflictError, NotFoundError } from '../../src/storage';
import { breakStale, LocalBlobStore } from '../../src/storage/local-blob-store';
import { S3BlobStore } from '../../src/storage/s3-blob-store';
import { motoCredentials, motoEndpoint } from '../support/moto';
import { tempDir } from '../support/tmp';

const adapters: Array<[string, () => Promise<BlobStore>]> = [
  ['local file system', async () => new LocalBlobStore(await tempDir())],
  [
    'S3 (moto server)',
    async () => {
      const s3 = new S3Client({
        endpoint: await motoEndpoint(),
        region: 'us-east-1',
        forcePathStyle: true,
        credentials: motoCredentials,
      });
      const bucket = `espresso-${randomBytes(4).toString('hex')}`;
      await s3.send(new CreateBucketCommand({ Bucket: bucket }));
      return new S3BlobStore(s3, bucket);
    },
  ],
];

for (const [name, makeStore] of adapters) {
  describe(`BlobStore contract: ${name}`, () => {
    let store: BlobStore;
    before(async () => {
      store = await makeStore();
    });

    it('returns what was put, with the same ETag the write reported', async () => {
      const { etag } = await store.put('runs/a/1.json', '{"n":1}');
      const got = await store.get('runs/a/1.json');
      assert.equal(got.body.toString(), '{"n":1}');
      assert.equal(got.etag, etag);
    });

    it('raises NotFoundError naming the key for a missing object', async () => {
      await assert.rejects(store.get('nope/missing.json'), (err: unknown) => {
        assert.ok(err instanceof NotFoundError);
        assert.match(err.message, /nope\/missing\.json/);
        return true;
      });
      await assert.rejects(async () => {
        for await (const _ of store.readLines('nope/missing.jsonl')) void _;
      }, NotFoundError);
    });

    it('lists keys under a prefix in order, and nothing outside it', async () => {
      await store.put('list/x/b', '2');
      await store.put('list/x/a', '1');
      await store.put('list/x/sub/c', '3');
      await store.put('list/y/a', '4');
      assert.deepEqual(await store.list('list/x/'), ['list/x/a', 'list/x/b', 'list/x/sub/c']);
      assert.deepEqual(await store.list('list/none/'), []);
    });

    it('pages through keys under a prefix: each key once, in order, ending with a short page', async () => {
      const keys = Array.from({ length: 7 }, (_, i) => `page/k${String(i).padStart(2, '0')}`);
      for (const key of [...keys].reverse()) await store.put(key, key);
      await store.put('pageother/z', 'outside');
      const pages: string[][] = [];
      let after: string | undefined;
      for (;;) {
        const page = await store.listPage('page/', { after, limit: 3 });
        pages.push(page);
        if (page.length < 3) break;
        after = page.at(-1);
      }
      assert.deepEqual(pages, [keys.slice(0, 3), keys.slice(3, 6), keys.slice(6)]);
      assert.deepEqual(await store.listPage('page/', { after: 'page/k06', limit: 3 }), []);
    });

    it('pages in key order across folders: a folder sorts as its keys do', async () => {
      // '-' < '/' < '0': 'nest/a-b' comes before the keys under 'nest/a/', 'nest/a0' after them.
      const keys = ['nest/a-b', 'nest/a/x', 'nest/a/y/z', 'nest/a0', 'nest/b', 'nest/c/d'];
      for (const key of [...keys].reverse()) await store.put(key, key);
      await store.put('nested/outside', 'outside');
      for (const limit of [1, 2, 4, 10]) {
        const listed: string[] = [];
        let after: string | undefined;
        for (;;) {
          const page = await store.listPage('nest/', { after, limit });
          listed.push(...page);
          if (page.length < limit) break;
          after = page.at(-1);
        }
        assert.deepEqual(listed, keys, `pages of ${limit}`);
      }
      assert.deepEqual(await store.listPage('nest/a', { limit: 10 }), keys.slice(0, 4));
      assert.deepEqual(await store.listPage('nest/', { after: 'nest/a/', limit: 2 }), keys.slice(1, 3));
      assert.deepEqual(await store.listPage('nest/', { after: 'nest/a/y', limit: 10 }), keys.slice(2));
    });

    it('deletes, and deleting a missing key is not an error', async () => {
      await store.put('del/k', 'v');
      await store.delete('del/k');
      await store.delete('del/k');
      await assert.rejects(store.get('del/k'), NotFoundError);
    });

    it('if-none-match creates once; a second create is a ConflictError and keeps the first', async () => {
      await store.put('cond/create', 'first', { ifNoneMatch: '*' });
      await assert.rejects(store.put('cond/create', 'second', { ifNoneMatch: '*' }), ConflictError);
      assert.equal((await store.get('cond/create')).body.toString(), 'first');
    });

    it('if-match writes over the expected version only', async () => {
      const v1 = await store.put('cond/update', 'v1');
      const v2 = await store.put('cond/update', 'v2', { ifMatch: v1.etag });
      await assert.rejects(store.put('cond/update', 'stale', { ifMatch: v1.etag }), ConflictError);
      const got = await store.get('cond/update');
      assert.equal(got.body.toString(), 'v2');
      assert.equal(got.etag, v2.etag);
    });

    it('of concurrent conditional writers on one version, exactly one wins', async () => {
      const base = await store.put('cond/race', 'base');
      const outcomes = await Promise.allSettled(
        Array.from({ length: 8 }, (_, i) => store.put('cond/race', `writer-${i}`, { ifMatch: base.etag })),
      );
      const winners = outcomes.flatMap((o, i) => (o.status === 'fulfilled' ? [i] : []));
      assert.equal(winners.length, 1, `expected one winner, got ${winners.length}`);
      for (const o of outcomes) if (o.status === 'rejected') assert.ok(o.reason instanceof ConflictError);
      assert.equal((await store.get('cond/race')).body.toString(), `writer-${winners[0]}`);
    });

    it('of concurrent creators, exactly one wins', async () => {
      const outcomes = await Promise.allSettled(
        Array.from({ length: 8 }, (_, i) => store.put('cond/create-race', `c-${i}`, { ifNoneMatch: '*' })),
      );
      assert.equal(outcomes.filter((o) => o.status === 'fulfilled').length, 1);
    });

    it('streams a multi-MB object line by line, and stops early on request', async () => {
      const lines = 60_000;
      const body = Array.from({ length: lines }, (_, i) => JSON.stringify({ i, pad: 'x'.repeat(40) })).join(
        '\n',
      );
      await store.put('big/contacts.jsonl', body + '\n');
      let count = 0;
      let last = '';
      for await (const line of store.readLines('big/contacts.jsonl')) {
        count++;
        last = line;
      }
      assert.equal(count, lines);
      assert.equal(JSON.parse(last).i, lines - 1);
      let seen = 0;
      for await (const _ of store.readLines('big/contacts.jsonl')) if (++seen === 3) break;
      assert.equal(seen, 3);
    });

    it('gives the same lines a batch at a time, ending them as readline does', async () => {
      const body = 'a\nb\r\nc\rd\n\ne\r';
      await store.put('lines/mixed.txt', body);
      const batches: string[][] = [];
      for await (const batch of store.readLineBatches('lines/mixed.txt')) batches.push(batch);
      assert.deepEqual(batches.flat(), ['a', 'b', 'c', 'd', '', 'e']);
      const lines: string[] = [];
      for await (const line of store.readLines('lines/mixed.txt')) lines.push(line);
      assert.deepEqual(lines, batches.flat());
      await store.put('lines/unended.txt', 'x\ny');
      const unended: string[] = [];
      for await (const batch of store.readLineBatches('lines/unended.txt')) unended.push(...batch);
      assert.deepEqual(unended, ['x', 'y']);
      // A multi-MB object comes in several batches, every line whole, none twice.
      const many = Array.from({ length: 60_000 }, (_, i) => `line ${i} ${'é'.repeat(i % 7)}`);
      await store.put('lines/many.txt', many.join('\r\n') + '\r\n');
      const got: string[][] = [];
      for await (const batch of store.readLineBatches('lines/many.txt')) got.push(batch);
      assert.ok(got.length > 1, `${got.length} batch(es)`);
      assert.deepEqual(got.flat(), many);
      await assert.rejects(async () => {
        for await (const _ of store.readLineBatches('nope/missing.jsonl')) void _;
      }, NotFoundError);
    });

    it('refuses keys that could escape the store', async () => {
      for (const key of ['../etc/passwd', '/abs', 'a//b', 'a/./b', '']) {
        await assert.rejects(store.put(key, 'x'), /invalid blob key/);
      }
    });
  });
}

describe('LocalBlobStore: its folders', () => {
  it('makes again a folder removed meanwhile (a key, its temporary files, its locks) and writes as before', async () => {
    const dir = await tempDir();
    const store = new LocalBlobStore(dir);
    await store.put('runs/a/one.json', '1');
    await store.put('runs/a/two.json', '2', { ifNoneMatch: '*' });
    for (const folder of ['objects/runs', 'tmp', 'locks']) {
      await rm(join(dir, folder), { recursive: true, force: true });
    }
    await store.put('runs/a/one.json', 'again');
    const { etag } = await store.put('runs/a/two.json', 'new', { ifNoneMatch: '*' });
    assert.equal((await store.get('runs/a/one.json')).body.toString(), 'again');
    assert.equal((await store.get('runs/a/two.json')).etag, etag);
    await store.delete('runs/a/one.json');
    await store.delete('runs/a/one.json');
    assert.deepEqual(await store.list('runs/'), ['runs/a/two.json']);
  });
});

describe('LocalBlobStore: a write lock left by a crashed process', () => {
  it('is broken after 30 s, and a waiter that judged it stale never breaks the fresh lock another took meanwhile', async () => {
    const dir = await tempDir();
    const store = new LocalBlobStore(dir);
    await store.put('locks/accounts/x.json', '{}', { ifNoneMatch: '*' }); // makes the store's folders
    const lock = join(dir, 'locks', `${encodeURIComponent('locks/accounts/x.json')}.lock`);
    // A process crashed in a conditional write a minute ago: a conditional write still goes through.
    await writeFile(lock, '');
    const old = new Date(Date.now() - 60_000);
    await utimes(lock, old, old);
    const judged = await stat(lock);
    await store.put('locks/accounts/x.json', '{"a":1}', {
      ifMatch: (await store.get('locks/accounts/x.json')).etag,
    });
    // Two waiters judged that stale lock; one broke it, and a third took a fresh one. The other
    // now breaks "the stale lock": the fresh one must stay.
    await writeFile(lock, 'fresh');
    await breakStale(lock, judged);
    assert.equal(await readFile(lock, 'utf8'), 'fresh');
    assert.deepEqual(
      (await readdir(join(dir, 'locks'))).filter((f) => f.endsWith('.stale')),
      [],
    );
    // The stale one itself is broken.
    await breakStale(lock, await stat(lock));
    await assert.rejects(stat(lock), { code: 'ENOENT' });
  });
});
