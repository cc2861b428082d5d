// `espresso doctor`'s word on a worker's clock (the whole command runs in test/start.test.ts and
// test/workflows/payload-key-rotation.test.ts, against real processes).
import { strict as assert } from 'node:assert';
import { clockOffset, workerClock } from '../src/cli/doctor';

describe('doctor: a worker clock against the Temporal server', () => {
  // The server gave the self-check out at 10:00:00.000 and recorded its end 40 ms later.
  const server = { dispatched: 1_800_000_000_000, completed: 1_800_000_000_040 };

  it('says how close a synchronized clock is', () => {
    const range = clockOffset(server, { startedAt: server.dispatched + 5, endedAt: server.dispatched + 30 });
    assert.deepEqual(range, { min: -10, max: 5 });
    assert.equal(workerClock(range), "its clock is within 10 ms of the Temporal server's");
  });

  it('warns of a clock surely more than a second ahead or behind, naming NTP', () => {
    const ahead = workerClock(
      clockOffset(server, { startedAt: server.dispatched + 5_005, endedAt: server.dispatched + 5_030 }),
    );
    assert.ok(typeof ahead !== 'string');
    assert.match(ahead.warning, /^its clock is at least 4990 ms ahead of the Temporal server's: .*\(NTP\)$/);
    const behind = workerClock(
      clockOffset(server, { startedAt: server.dispatched - 3_000, endedAt: server.dispatched - 2_980 }),
    );
    assert.ok(typeof behind !== 'string');
    assert.match(behind.warning, /^its clock is at least 3000 ms behind the Temporal server's/);
  });

  it('does not warn when slow round trips leave the offset unsure', () => {
    // 1.5 s between the server's two times: the offset is anywhere from -1.49 s to 0.
    const slow = { dispatched: server.dispatched, completed: server.dispatched + 1_500 };
    const range = clockOffset(slow, { startedAt: server.dispatched, endedAt: server.dispatched + 10 });
    assert.equal(workerClock(range), "its clock is within 1490 ms of the Temporal server's");
  });
});
