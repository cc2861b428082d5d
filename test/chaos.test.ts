// The short chaos variant: 10,000 contacts, a failing Sandbox (5% 5xx, 5% 429, 1% timeouts, 0.5%
// rejected rows), one worker SIGKILL mid-run, and the same configuration started again through
// every entry point while it writes (--overlap); and an OAuth configuration whose short-lived
// tokens two workers refresh (--oauth); and the same faults on the cluster topology (`espresso
// cluster`: the Temporal server on PostgreSQL, moto) with a worker kill and a PostgreSQL restart
// (--cluster), two configurations of one ESP account writing one after the other (the second the
// first's guest meanwhile: --configurations 2). `npm run chaos` is the full version.
import { strict as assert } from 'node:assert';
import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { provisionCluster } from '../src/cluster';
import { projectRoot } from '../src/paths';
import { clusterBuilt } from './support/cluster-build';

/**
 * `npm run chaos` at 10,000 contacts, one worker kill, no server restart; its JSON report. It runs
 * in a process group of its own: should it outlast 290 s, the whole group (its dev server, Sandbox
 * and workers too) is killed, so a timeout leaves nothing behind.
 */
async function chaos(...args: string[]) {
  const child = spawn(
    process.execPath,
    [
      join(projectRoot, 'dist/bench/chaos.js'),
      '--json',
      '--contacts',
      '10000',
      '--kills',
      '1',
      '--server-restarts',
      '0',
      ...args,
    ],
    { detached: true, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let stdout = '';
  child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
  const timer = setTimeout(() => process.kill(-child.pid!, 'SIGKILL'), 290_000);
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  clearTimeout(timer);
  assert.equal(code, 0, `chaos ended with ${code}:\n${stdout}`);
  return JSON.parse(stdout);
}

describe('chaos (short): faults and a worker kill lose nothing', function () {
  this.timeout(300_000);

  it('a worker killed while the export lists and chunk updates write beside it: the next worker resumes both, none lost, none written twice', async () => {
    // 25,000 contacts: three chunks, so chunk updates start while the export still lists.
    const report = await chaos('--kill-during-export', '--contacts', '25000');
    assert.equal(report.contacts, 25_000);
    assert.equal(report.workerKills, 1);
    assert.equal(report.killsWhileExporting, 1);
    assert.equal(report.lost, 0);
    assert.equal(report.conflictingWrites, 0);
    assert.equal(report.updated + report.rejected, 25_000);
    // Every contact sent once at least; one in a failed request or a killed attempt, again.
    assert.ok(report.contactWrites >= report.updated, `${report.contactWrites} contact writes`);
    assert.equal(report.summaryCountsAddUp, true);
  });

  it('ends with every contact holding its chunk value or rejected with a reason, none written twice, every second start held off', async () => {
    const report = await chaos('--overlap');
    assert.equal(report.contacts, 10_000);
    // espresso sync, the admin page's Run now, temporal workflow start, espresso redispatch.
    assert.equal(report.overlapStarts, 4);
    assert.equal(report.overlapsHeldOff, 4);
    assert.equal(report.lost, 0);
    assert.equal(report.conflictingWrites, 0);
    assert.equal(report.workerKills, 1);
    // An earlier run (the one redispatch names) wrote the first 1,000 before the faults began.
    assert.equal(report.updated + report.rejected, 9_000);
    assert.ok(report.rejected > 0, 'the Sandbox rejects about 0.5% of rows');
    assert.equal(report.summaryCountsAddUp, true);
  });

  it('an OAuth configuration whose tokens expire every 3 s, on two workers: one refresh at a time, never needs_reauth', async () => {
    const report = await chaos('--oauth', '--workers', '2', '--token-lifetime', '3');
    assert.equal(report.workers, 2);
    assert.ok(report.tokenRefreshes > 0, 'no access token expired during the run');
    assert.equal(report.refreshTokenReuses, 0, 'a rotated refresh token was presented again');
    assert.equal(report.needsReauth, 0);
    assert.equal(report.lost, 0);
    assert.equal(report.conflictingWrites, 0);
    assert.equal(report.updated + report.rejected, 10_000);
  });

  it('refuses PostgreSQL restarts without the cluster, before starting anything', () => {
    const out = spawnSync(
      process.execPath,
      [join(projectRoot, 'dist/bench/chaos.js'), '--database-restarts', '1'],
      {
        encoding: 'utf8',
      },
    );
    assert.equal(out.status, 2);
    assert.match(out.stderr, /--database-restarts needs --cluster \(the dev server has no database server\)/);
  });

  describe('on the cluster topology', () => {
    // A fresh machine builds the Temporal server and its Web UI first (minutes, in the background
    // since the run started), and installs PostgreSQL: done here, so the chaos run's own time limit
    // covers the run alone.
    before(async function () {
      this.timeout(15 * 60_000);
      await clusterBuilt();
      provisionCluster();
    });

    it('a worker SIGKILL and a PostgreSQL restart mid-run lose nothing, with two configurations of one ESP account: one writes, the other waits as its guest', async () => {
      const report = await chaos(
        '--cluster',
        '--workers',
        '2',
        '--database-restarts',
        '1',
        '--configurations',
        '2',
      );
      assert.equal(report.workers, 2);
      assert.equal(report.configurations, 2);
      assert.equal(report.waitedForAccount, 1);
      assert.equal(report.listedAsGuest, 1);
      assert.equal(report.workerKills, 1);
      assert.equal(report.databaseRestarts, 1);
      assert.equal(report.lost, 0);
      assert.equal(report.conflictingWrites, 0);
      assert.equal(report.updated + report.rejected, 20_000);
      assert.equal(report.summaryCountsAddUp, true);
    });
  });
});
