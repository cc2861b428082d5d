// The ESP account lock (one run per account): on the local file system and on S3 (moto server),
// since what makes it safe across workers is the store's conditional writes.
import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import {
  accountLockKey,
  AccountLocks,
  LOCK_TTL_MS,
  STALE_AFTER_MS,
  LockLostError,
  type LockOwner,
} from '../../src/runs/account-lock';
import type { BlobStore } from '../../src/storage';
import { LocalBlobStore } from '../../src/storage/local-blob-store';
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

const run = (configurationId: string, n: number): LockOwner => ({
  configurationId,
  workflowId: `sync/${configurationId}/2026-12-0${n}`,
  runId: `run-${n}`,
  dryRun: false,
});

for (const [name, makeStore] of adapters) {
  describe(`ESP account lock: ${name}`, () => {
    let blobs: BlobStore;
    let now = 1_800_000_000_000;
    const clock = () => now;
    before(async () => {
      blobs = await makeStore();
    });

    /** A lock on an account of its own, taken by run 1 of cfg_a (`a`); `b` is run 2 of cfg_b. */
    const takenByA = async (esp: string, account: string) => {
      const locks = new AccountLocks(blobs, clock);
      const key = accountLockKey(esp, account);
      const [a, b] = [run('cfg_a', 1), run('cfg_b', 2)];
      await locks.acquire(key, a);
      return { locks, key, a, b };
    };

    it('is held by one run; another run of any configuration of the account is told who holds it', async () => {
      const locks = new AccountLocks(blobs, clock);
      const key = accountLockKey('mailchimp', 'acct-one');
      const a = run('cfg_a', 1);
      assert.deepEqual(await locks.acquire(key, a), { held: true });
      assert.deepEqual(await locks.acquire(key, a), { held: true }, 'a retry of the same run takes it again');
      assert.deepEqual(await locks.acquire(key, run('cfg_b', 2)), { held: false, holder: a });
      assert.deepEqual(await locks.acquire(key, run('cfg_a', 3)), { held: false, holder: a });
      assert.deepEqual(await locks.holder(key), { owner: a, expired: false });
      // Another account is another lock.
      assert.deepEqual(await locks.acquire(accountLockKey('mailchimp', 'acct-two'), run('cfg_b', 2)), {
        held: true,
      });
    });

    it('of many runs asking at once on different workers, exactly one gets it', async () => {
      const key = accountLockKey('hubspot', 'portal-race');
      const owners = Array.from({ length: 12 }, (_, i) => run(`cfg_${i}`, i));
      // One AccountLocks per "worker": nothing is shared but the store.
      const answers = await Promise.all(owners.map((o) => new AccountLocks(blobs, clock).acquire(key, o)));
      const winners = answers.filter((a) => a.held);
      assert.equal(winners.length, 1);
      const holder = await new AccountLocks(blobs, clock).holder(key);
      for (const a of answers) if (!a.held) assert.deepEqual(a.holder, holder?.owner);
    });

    it('given back, the next run takes it at once; renewing it then fails', async () => {
      const { locks, key, a, b } = await takenByA('klaviyo', 'acct-release');
      await locks.release(key, a);
      assert.equal(await locks.holder(key), undefined);
      assert.deepEqual(await locks.acquire(key, b), { held: true });
      await locks.release(key, a); // a late give-back of the old holder changes nothing
      assert.deepEqual(await locks.holder(key), { owner: b, expired: false });
      await assert.rejects(locks.renew(key, a), LockLostError);
    });

    it('a run that stops without giving it back frees it after the TTL, to a run that saw it end; renewed, it is kept', async () => {
      const { locks, key, a, b } = await takenByA('sendgrid', 'acct-expiry');
      now += LOCK_TTL_MS - 1_000;
      const { validUntil } = await locks.renew(key, a);
      assert.equal(validUntil, now + LOCK_TTL_MS);
      now += LOCK_TTL_MS - 1_000;
      assert.deepEqual(
        await locks.acquire(key, b, { holderEnded: a }),
        { held: false, holder: a },
        'renewed in time, still held',
      );
      now += 2_000;
      assert.deepEqual(
        await locks.acquire(key, b),
        { held: false, holder: a, expired: true },
        'its run may run',
      );
      assert.deepEqual(
        await locks.acquire(key, b, { holderEnded: run('cfg_c', 3) }),
        { held: false, holder: a, expired: true },
        'another run ended',
      );
      assert.deepEqual(
        await locks.acquire(key, b, { holderEnded: a }),
        { held: true },
        'expired, its run ended: taken',
      );
      await assert.rejects(locks.renew(key, a), (err: Error) => {
        assert.ok(err instanceof LockLostError);
        assert.match(err.message, /another run \(sync\/cfg_b\/2026-12-02\) took this ESP account/);
        return true;
      });
    });

    it('expired, its run still running keeps it (its activities renew it as they start again), until it is stale', async () => {
      const { locks, key, a, b } = await takenByA('sendgrid', 'acct-outage');
      // Every worker down for twenty minutes: nothing renews it, and the waiting run asks.
      now += 2 * LOCK_TTL_MS;
      assert.deepEqual(await locks.acquire(key, b), { held: false, holder: a, expired: true });
      // Still its holder, expired: the admin page and `espresso sync` ask Temporal whether it runs.
      assert.deepEqual(await locks.holder(key), { owner: a, expired: true });
      // The workers are back: the run's next activity renews its lock and goes on.
      assert.equal((await locks.renew(key, a)).validUntil, now + LOCK_TTL_MS);
      assert.deepEqual(await locks.acquire(key, b), { held: false, holder: a });
      // A run that renews nothing for STALE_AFTER_MS past its lock's expiry calls no ESP: taken.
      now += LOCK_TTL_MS + STALE_AFTER_MS - 1_000;
      assert.deepEqual(await locks.acquire(key, b), { held: false, holder: a, expired: true });
      now += 1_000;
      assert.equal(await locks.holder(key), undefined, 'stale: no holder');
      assert.deepEqual(await locks.acquire(key, b), { held: true });
      await assert.rejects(
        locks.renew(key, a),
        LockLostError,
        'its activities stop before their first request',
      );
    });

    it('a run of an earlier version, which never asks the holder, takes an expired lock as it did', async () => {
      const { locks, key, a, b } = await takenByA('brevo', 'acct-earlier-run');
      now += LOCK_TTL_MS + 1_000;
      assert.deepEqual(await locks.acquire(key, b), { held: false, holder: a, expired: true });
      assert.deepEqual(await locks.acquire(key, b, { expiredIsFree: true }), { held: true });
    });

    it('renewed within a minute of its last renewal, it is read and not written again', async () => {
      const locks = new AccountLocks(blobs, clock);
      const key = accountLockKey('brevo', 'acct-renew-read');
      const a = run('cfg_a', 1);
      await locks.acquire(key, a);
      const taken = (await blobs.get(key)).etag;
      now += 59_000;
      assert.equal((await locks.renew(key, a)).validUntil, now - 59_000 + LOCK_TTL_MS);
      assert.equal((await blobs.get(key)).etag, taken, 'taken 59 s ago: not written');
      now += 2_000;
      assert.equal((await locks.renew(key, a)).validUntil, now + LOCK_TTL_MS);
      assert.notEqual((await blobs.get(key)).etag, taken, 'taken 61 s ago: renewed');
      await locks.release(key, a);
      await assert.rejects(locks.renew(key, a), LockLostError, 'given back: a read finds it lost');
    });

    it('lent to the run waiting next: it is told its share as it asks, pauses with the holder, and holds the lock once the holder gives it back', async () => {
      const { locks, key, a, b } = await takenByA('sandbox', 'acct-guest');
      const c = run('cfg_c', 3);
      // Asked before the holder lends it anything, or without saying it may be a guest: waiting.
      assert.deepEqual(await locks.acquire(key, b, { mayBeGuest: true }), { held: false, holder: a });
      assert.equal(await locks.lend(key, a, b.workflowId, { fraction: 0.1, slots: 1 }), true);
      assert.deepEqual(await locks.acquire(key, b), { held: false, holder: a });
      assert.deepEqual(await locks.acquire(key, b, { mayBeGuest: true }), {
        held: false,
        holder: a,
        guest: { fraction: 0.1, slots: 1 },
      });
      // One guest at a time; another run is not told of it.
      assert.equal(await locks.lend(key, a, c.workflowId, { fraction: 0.5, slots: 5 }), false);
      assert.deepEqual((await locks.renew(key, b)).guest, { fraction: 0.1, slots: 1 });
      assert.deepEqual(await locks.acquire(key, c, { mayBeGuest: true }), { held: false, holder: a });
      // Only the holder lends.
      assert.equal(await locks.lend(key, b, c.workflowId, { fraction: 0.5, slots: 5 }), false);
      // A 429 the guest meets pauses the holder too, and the other way round.
      await locks.pause(key, b, now + 10_000);
      assert.equal(await locks.pausedUntil(key, a), now + 10_000);
      assert.equal((await locks.renew(key, b)).pausedUntil, now + 10_000);
      // Given back: the lock is the guest's, at once, with the pause; the old holder's is lost.
      await locks.release(key, a);
      assert.deepEqual(await locks.holder(key), { owner: b, expired: false });
      const renewed = await locks.renew(key, b);
      assert.equal(renewed.guest, undefined);
      assert.equal(renewed.pausedUntil, now + 10_000);
      await assert.rejects(locks.renew(key, a), LockLostError);
      assert.deepEqual(await locks.acquire(key, c, { mayBeGuest: true }), { held: false, holder: b });
    });

    it("each of the holder's last chunks adds its share to the guest's once, as its last request is answered; only the holder's tail does", async () => {
      const { locks, key, a, b } = await takenByA('sandbox', 'acct-guest-tail');
      // Nothing lent yet: an ending chunk adds to nothing.
      await locks.lendEnded(key, a, 1, { fraction: 0.25, slots: 2 });
      // Told first, lent nothing: the guest gets ready.
      assert.equal(await locks.lend(key, a, b.workflowId, { fraction: 0, slots: 0 }), true);
      assert.deepEqual(await locks.acquire(key, b, { mayBeGuest: true }), {
        held: false,
        holder: a,
        guest: { fraction: 0, slots: 0 },
      });
      await locks.lendEnded(key, a, 2, { fraction: 0.25, slots: 2 }); // no tail named yet
      // Its last chunks in flight: what they do not use, and each one's share as it ends.
      const lent = { fraction: 0.25, slots: 2, quietSince: now - 50 };
      assert.equal(await locks.lend(key, a, b.workflowId, lent, [2, 3, 4]), true);
      await locks.lendEnded(key, a, 2, { fraction: 0.25, slots: 2, quietSince: now - 40 });
      await locks.lendEnded(key, a, 2, { fraction: 0.25, slots: 2 }); // a retry of chunk 2
      await locks.lendEnded(key, a, 1, { fraction: 0.25, slots: 2 }); // not of the tail
      await locks.lendEnded(key, b, 3, { fraction: 0.25, slots: 2 }); // not the holder's
      assert.deepEqual((await locks.renew(key, b)).guest, { fraction: 0.5, slots: 4, quietSince: now - 40 });
      // The tail is named once; what is lent never shrinks.
      await locks.lend(key, a, b.workflowId, { fraction: 0.1, slots: 1 }, [1]);
      await locks.lendEnded(key, a, 1, { fraction: 0.25, slots: 2 });
      await locks.lendEnded(key, a, 3, { fraction: 0.25, slots: 2, quietSince: now - 10 });
      assert.deepEqual(await locks.standing(key, b), {
        role: 'guest',
        share: { fraction: 0.75, slots: 6, quietSince: now - 10 },
        pausedUntil: 0,
      });
      await locks.release(key, a);
      assert.deepEqual(await locks.standing(key, b), { role: 'holder', pausedUntil: 0 });
      assert.equal((await locks.standing(key, a)).role, 'lost');
    });

    it('a guest that ends before the holder leaves the lock to the holder, and the next run takes it from there', async () => {
      const { locks, key, a, b } = await takenByA('sandbox', 'acct-guest-gone');
      await locks.lend(key, a, b.workflowId, { fraction: 0.5, slots: 2 });
      await locks.acquire(key, b, { mayBeGuest: true });
      await locks.release(key, b);
      assert.deepEqual(await locks.holder(key), { owner: a, expired: false });
      await assert.rejects(locks.renew(key, b), LockLostError);
      await locks.release(key, a);
      assert.equal(await locks.holder(key), undefined);
      assert.deepEqual(await locks.acquire(key, run('cfg_c', 3)), { held: true });
    });

    it("a holder that stopped without giving it back: its guest takes it once it saw the holder end; a third run that takes it first leaves the guest's activities stopped", async () => {
      const { locks, key, a, b } = await takenByA('sandbox', 'acct-guest-expiry');
      const c = run('cfg_c', 3);
      await locks.lend(key, a, b.workflowId, { fraction: 0.5, slots: 5 }, [1]);
      await locks.acquire(key, b, { mayBeGuest: true });
      now += LOCK_TTL_MS + 1_000;
      assert.deepEqual(await locks.acquire(key, b, { holderEnded: a }), { held: true });
      assert.deepEqual(await locks.standing(key, b), { role: 'holder', pausedUntil: 0 });
      // Another account: the third run gets there first.
      const other = await takenByA('sandbox', 'acct-guest-expiry-2');
      await other.locks.lend(other.key, other.a, other.b.workflowId, { fraction: 0.5, slots: 5 }, [1]);
      await other.locks.acquire(other.key, other.b, { mayBeGuest: true });
      now += LOCK_TTL_MS + 1_000;
      assert.deepEqual(await other.locks.acquire(other.key, c, { holderEnded: other.a }), { held: true });
      const standing = await other.locks.standing(other.key, other.b);
      assert.equal(standing.role, 'lost');
      assert.match(
        standing.role === 'lost' ? standing.why : '',
        /another run \(sync\/cfg_c\/2026-12-03\) took/,
      );
      await assert.rejects(other.locks.renew(other.key, other.b), LockLostError);
    });

    it("a 429 pause is seen by the holder's activities on every worker, and kept through renewals", async () => {
      const key = accountLockKey('iterable', 'acct-pause');
      const a = run('cfg_a', 1);
      const workerOne = new AccountLocks(blobs, clock);
      const workerTwo = new AccountLocks(blobs, clock);
      await workerOne.acquire(key, a);
      assert.equal(await workerTwo.pausedUntil(key, a), 0);
      await workerOne.pause(key, a, now + 30_000);
      await workerOne.pause(key, a, now + 5_000); // an earlier end never shortens it
      assert.equal(await workerTwo.pausedUntil(key, a), now + 30_000);
      assert.equal((await workerTwo.renew(key, a)).pausedUntil, now + 30_000);
      // Only the holder's pause counts: another run cannot pause it.
      await workerTwo.pause(key, run('cfg_b', 2), now + 600_000);
      assert.equal(await workerOne.pausedUntil(key, a), now + 30_000);
    });

    it('a pause longer than the TTL keeps the lock through it; the next holder waits out what is left of it', async () => {
      const { locks, key, a, b } = await takenByA('hubspot', 'acct-daily-limit');
      // HubSpot's daily limit: 15 minutes, during which the run's activity waits for its retry and
      // nothing renews the lock.
      await locks.pause(key, a, now + 15 * 60_000);
      now += 14 * 60_000;
      assert.deepEqual(await locks.acquire(key, b), { held: false, holder: a }, 'taken during the pause');
      now += 2 * 60_000;
      assert.equal((await locks.renew(key, a)).pausedUntil, now - 60_000, 'the retry finds its lock');
      // Given back one minute into the pause's end: the next run takes the account with nothing left.
      await locks.pause(key, a, now + 5 * 60_000);
      await locks.release(key, a);
      assert.deepEqual(await locks.acquire(key, b), { held: true });
      assert.equal(
        (await locks.renew(key, b)).pausedUntil,
        now + 5 * 60_000,
        'the ESP still pauses the account',
      );
      now += 6 * 60_000;
      await locks.release(key, b);
      assert.deepEqual(await locks.acquire(key, a), { held: true });
      assert.equal((await locks.renew(key, a)).pausedUntil, 0, 'a pause that ended is not carried');
    });
  });
}
