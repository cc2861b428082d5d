import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { reapLeftovers, taggedProcesses, TEST_RUN_VARIABLE } from './support/leftovers';
import { runFixture } from './support/mocha-child';
import { alive } from './support/processes';

describe('the test run leaves no process behind', () => {
  it('finds a process the run started that is still alive, even orphaned, and kills it', async () => {
    const tag = `leftover-test-${randomBytes(4).toString('hex')}`;
    // A child that starts a grandchild and exits: the grandchild is orphaned, as a leaked worker is.
    const parent = spawn(
      process.execPath,
      [
        '-e',
        "require('child_process').spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { detached: true, stdio: 'ignore' }).unref()",
      ],
      // A tag of its own: the rest of the run's processes are not this test's business.
      { stdio: 'ignore', env: { ...process.env, [TEST_RUN_VARIABLE]: tag } },
    );
    await new Promise((resolve) => parent.on('exit', resolve));
    const found = taggedProcesses(tag);
    assert.equal(found.length, 1, JSON.stringify(found));
    assert.match(found[0]!.command, /setInterval/);
    const reaped = await reapLeftovers(300, tag);
    assert.deepEqual(
      reaped.map((p) => p.pid),
      [found[0]!.pid],
    );
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(taggedProcesses(tag), []);
  });
});

describe('the test run fails on a process left behind', function () {
  this.timeout(120_000);

  it('fails a run whose test leaves a process running, naming it, and kills it', async () => {
    const { code, out } = await runFixture('leftover-process', { timeoutMs: 60_000 });
    assert.notEqual(code, 0, out);
    assert.match(out, /1 passing/, out);
    const pid = Number(/fixture process pid (\d+)/.exec(out)?.[1]);
    assert.ok(pid, out);
    assert.match(out, /processes started by the tests were still running at the end \(killed now\):/, out);
    assert.match(out, new RegExp(`pid ${pid}: \\S+ -e setInterval\\(.*leaked-by-fixture`), out);
    assert.ok(!alive(pid), `pid ${pid} is still alive`);
  });
});

describe('the test run leaves nothing on the Temporal server', function () {
  this.timeout(120_000);

  it('ends a run left waiting on the real task queue and deletes a schedule, failing the run naming both', async () => {
    const tag = `leftover-${randomBytes(4).toString('hex')}`;
    const { code, out } = await runFixture('temporal-leftovers', {
      timeoutMs: 60_000,
      env: { ESPRESSO_LEFTOVER_TAG: tag },
    });
    assert.notEqual(code, 0, out);
    assert.match(out, /1 passing/, out);
    assert.match(out, /left on the Temporal server by the tests \(ended now\)/, out);
    assert.match(out, new RegExp(`workflow sync/${tag}/2026-11-28/first-run \\(task queue espresso\\)`), out);
    assert.match(out, new RegExp(`schedule ${tag}-schedule`), out);
  });
});

describe('the test run ends by itself', function () {
  this.timeout(120_000);

  it('fails a run whose tests leave a server listening and an interval running, naming both', async () => {
    const started = Date.now();
    const { code, out } = await runFixture('open-handles', { timeoutMs: 60_000 });
    assert.notEqual(code, 0, out);
    assert.match(out, /1 passing/, out);
    assert.match(out, /did not end by itself 10 s after its last hook; still open:/, out);
    const port = /fixture server port (\d+)/.exec(out)?.[1];
    assert.ok(port, out);
    assert.match(out, new RegExp(`server listening on 127\\.0\\.0\\.1:${port}`), out);
    assert.match(out, /1 timer\(s\) still set/, out);
    // It ends the run once the grace period is over, not when the interval would next fire.
    assert.ok(Date.now() - started < 40_000, `took ${Date.now() - started} ms`);
  });
});
