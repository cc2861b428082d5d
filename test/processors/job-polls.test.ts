// Polling an ESP's asynchronous job (SendGrid's upserts and exports, Iterable's exports, beehiiv's
// bulk updates): the waits between polls double up to 30 s, and a cancelled activity ends at once.
import { strict as assert } from 'node:assert';
import { pollJob } from '../../src/processors/kit/poll';

describe('job polling', () => {
  it('asks again with doubling delays until the job answers', async () => {
    const asked: number[] = [];
    const started = Date.now();
    const answer = await pollJob(
      async () => (asked.push(Date.now() - started), asked.length === 3 ? 'done' : undefined),
      { firstDelayMs: 50, waitMs: 5_000 },
    );
    assert.equal(answer, 'done');
    assert.ok(asked[1]! - asked[0]! >= 45 && asked[2]! - asked[1]! >= 95, asked.join(' '));
  });

  it('a cancelled activity stops waiting between polls at once, and polls no more', async () => {
    const cancelled = new AbortController();
    let polls = 0;
    const polling = pollJob(async () => void polls++, {
      firstDelayMs: 10_000,
      waitMs: 60_000,
      signal: cancelled.signal,
    });
    await new Promise((r) => setTimeout(r, 100));
    const abortedAt = Date.now();
    cancelled.abort();
    await assert.rejects(polling, { name: 'AbortError' });
    assert.ok(Date.now() - abortedAt < 200, `ended ${Date.now() - abortedAt} ms after the abort`);
    assert.equal(polls, 1);
  });
});
