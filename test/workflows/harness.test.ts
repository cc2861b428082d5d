import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { runFixture } from '../support/mocha-child';

const TIMEOUT_MS = 90_000;

describe('the workflow test harness (test/support/espresso.ts)', function () {
  this.timeout(TIMEOUT_MS + 60_000);

  it('fails the waiting test at once when its worker dies, and the after hook with it', async () => {
    const crash = `staged worker crash ${randomBytes(4).toString('hex')}`;
    const started = Date.now();
    const { code, out } = await runFixture('worker-crash', {
      timeoutMs: TIMEOUT_MS,
      env: { ESPRESSO_STAGED_CRASH: crash },
    });
    assert.notEqual(code, 0, out);
    assert.doesNotMatch(out, /Timeout of/, out);
    assert.ok(Date.now() - started < TIMEOUT_MS, `${Date.now() - started} ms: the wait ran into its timeout`);
    assert.match(out, /0 passing/, out);
    assert.match(out, /2 failing/, out);
    const failures = out
      .slice(out.indexOf('2 failing'))
      .split(/^\s+\d\) /m)
      .slice(1);
    const test = failures.find((f) => f.includes('waits for a run the dead worker will never finish'));
    const hook = failures.find((f) => f.includes('"after all" hook'));
    // The test fails through the crash report, the hook through stop()'s rejection.
    assert.ok(test?.includes(`Uncaught Error: the test worker on task queue`) && test.includes(crash), out);
    assert.ok(hook?.includes(`Error: the test worker on task queue`) && hook.includes(crash), out);
    assert.ok(!hook!.includes('Uncaught'), out);
  });
});
