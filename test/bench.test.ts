// Keeps `npm run bench` working (tiny sizes; the numbers are not checked here, only the shape and
// the benchmark's own verification that every contact holds its chunk value).
import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { workerPacingEnv } from '../bench/stack';
import { loadConfig } from '../src/config';
import { projectRoot } from '../src/paths';
import { PROFILE_NAMES } from '../src/sandbox/profiles';
import { tempDir } from './support/tmp';

const bench = async (args: string[]) => {
  const { stdout } = await promisify(execFile)(
    process.execPath,
    [join(projectRoot, 'dist/bench/run.js'), '--json', ...args, '--results-dir', await tempDir()],
    { timeout: 290_000, maxBuffer: 10 * 1024 * 1024 },
  );
  return JSON.parse(stdout);
};

describe("the benchmark's workers", () => {
  it("a profile run's worker keeps within the profile's own figures: SendGrid's 600 a minute, not 10 a second", () => {
    // profileRun passes the profile's rate as per-second pacing too (the bench's own processor uses it).
    const env = workerPacingEnv({ rps: 10, concurrency: 8 }, { ESPRESSO_SANDBOX_CLIENT_PROFILE: 'sendgrid' });
    assert.deepEqual(loadConfig(env).sandbox.client.rateLimit, { requests: 600, perMs: 60_000 });
    // Without a profile the per-second figures are what the worker keeps within.
    const plain = loadConfig(workerPacingEnv({ rps: 50, concurrency: 10 })).sandbox.client;
    assert.deepEqual([plain.rateLimit, plain.concurrency], [{ requests: 50, perMs: 1000 }, 10]);
  });
});

describe('npm run bench (smoke run at tiny sizes)', function () {
  this.timeout(300_000);

  it('runs every scenario, verifies the values, and prints one JSON object', async () => {
    const report = await bench([
      '--runs',
      '2',
      '--contacts',
      '3000',
      '--per-contact',
      '40',
      '--limited',
      '600',
      '--split-contacts',
      '2000',
      '--profile-contacts',
      '30',
    ]);
    assert.equal(report.contacts, 3000);
    assert.equal(report.topology, 'dev server, in memory');
    for (const key of ['seconds', 'contactsPerSecond', 'maxHistoryEvents', 'peakWorkerRssMb']) {
      assert.equal(typeof report.pipeline[key], 'number', `pipeline.${key}`);
    }
    assert.ok(report.direct.contactsPerSecond > 0);
    // What each process used while the run (or the loop) went on: some CPU, no more than the
    // machine's cores could give it in that time.
    const cores = cpus().length;
    for (const [scenario, mine] of [
      ['pipeline', 'worker'],
      ['direct', 'loop'],
    ] as const) {
      const { seconds, cpuSeconds } = report[scenario];
      assert.deepEqual(Object.keys(cpuSeconds).sort(), [mine, 'sandbox', 'temporal'].sort(), scenario);
      for (const [name, used] of Object.entries(cpuSeconds) as Array<[string, number]>) {
        assert.ok(used >= 0 && used <= seconds * cores + 0.05, `${scenario} ${name}: ${used} s`);
      }
      assert.ok(cpuSeconds[mine] > 0 && cpuSeconds.sandbox > 0, `${scenario}: ${JSON.stringify(cpuSeconds)}`);
    }
    assert.equal(report.perContact.contacts, 40);
    assert.ok(report.ratios.pipelineVsDirect > 0 && report.ratios.pipelineVsPerContact > 0);
    // Two pairs of pipeline and direct runs: the figures are the median pair's (of two, the lower
    // ratio), and both ratios are there.
    const pairs = report.ratios.pipelineVsDirectRuns;
    assert.equal(pairs.length, 2);
    assert.equal(report.ratios.pipelineVsDirect, Math.min(...pairs));
    assert.equal(
      report.ratios.pipelineVsDirect,
      Math.round((report.pipeline.contactsPerSecond / report.direct.contactsPerSecond) * 100) / 100,
    );
    assert.equal(report.splitLimit.runs.length, 2);
    assert.equal(report.rateLimited.limitRps, 50);
    assert.ok(report.rateLimited.share429 >= 0 && report.rateLimited.share429 <= 1);
    // Listing pages of 1,000 and batches of 500, counted by the Sandbox: pages by offset, three on
    // their way at once before the first answers (which says the list's size), so up to one past
    // the list's end is asked for too, and answered empty.
    assert.deepEqual([report.splitLimit.contacts, report.splitLimit.needed.writing], [2000, 4]);
    assert.ok(
      report.splitLimit.needed.listing >= 2 && report.splitLimit.needed.listing <= 3,
      `${report.splitLimit.needed.listing} listing requests`,
    );
    for (const key of ['seconds', 'boundSeconds', 'boundRatio', 'firstWriteSeconds']) {
      assert.ok(report.splitLimit[key] > 0, `splitLimit.${key}`);
    }
    assert.deepEqual(
      report.profiles.map((p: { profile: string }) => p.profile),
      PROFILE_NAMES,
    );
    for (const p of report.profiles) {
      assert.equal(p.contacts, 30);
      assert.ok(
        p.seconds > 0 && p.boundSeconds > 0 && p.boundRatio > 0 && p.projected1MSeconds > 0,
        p.profile,
      );
      // The processor, told the profile, keeps within the account's limits.
      assert.equal(p.responses429, 0, p.profile);
    }
  });

  it('runs the split-limit scenario alone with --split-limit, and on a SQLite file with --server-db-file', async () => {
    const report = await bench(['--split-limit', '--split-contacts', '1000', '--server-db-file']);
    assert.equal(report.topology, 'dev server, SQLite file');
    assert.equal(report.splitLimit.contacts, 1000);
    assert.equal(report.pipeline, undefined);
    assert.equal(report.profiles, undefined);
  });

  it('runs only the profiles named, --runs times each: the median run, and every run', async () => {
    const report = await bench(['--profiles', 'mailchimp', '--profile-contacts', '30', '--runs', '3']);
    assert.equal(report.splitLimit, undefined);
    assert.deepEqual(
      report.profiles.map((p: { profile: string }) => p.profile),
      ['mailchimp'],
    );
    const [mailchimp] = report.profiles;
    const seconds = mailchimp.runs.map((r: { seconds: number }) => r.seconds);
    assert.equal(seconds.length, 3);
    assert.equal(mailchimp.seconds, [...seconds].sort((a, b) => a - b)[1], JSON.stringify(seconds));
    for (const run of mailchimp.runs) assert.equal(run.responses429, 0);
  });

  it('names the profiles when --profiles names one that does not exist', async () => {
    await assert.rejects(bench(['--profiles', 'mailchump']), (err: Error & { stderr?: string }) => {
      assert.match(err.stderr ?? '', /unknown profile mailchump: the profiles are hubspot-pro, mailchimp/);
      return true;
    });
  });

  it('README: --fleet --one-account runs only the runs on the one limited account, within its limits', async () => {
    const report = await bench(['--fleet', '--one-account', '--fleet-contacts', '2000']);
    const { workers, sharedAccount, run } = report.fleet;
    assert.deepEqual(
      workers.map((w: { workers: number }) => w.workers),
      [1, 2, 4],
    );
    assert.equal(sharedAccount.configurations, 2);
    assert.equal(run, undefined, 'the daily run over the fleet ran too');
    for (const figures of [...workers, sharedAccount]) {
      assert.equal(figures.contacts, 2000);
      assert.equal(figures.limitRps, 50);
      assert.ok(figures.share429 <= 0.01, `${figures.share429} of requests answered 429`);
      // The account's timeline holds every request, the listing pages among them.
      const { perHalfSecond, listingPerHalfSecond, largestGapMs } = figures.timeline;
      const sum = (bins: number[]) => bins.reduce((a, b) => a + b, 0);
      assert.equal(sum(perHalfSecond), figures.requests);
      assert.ok(
        sum(listingPerHalfSecond) >= figures.configurations,
        `${sum(listingPerHalfSecond)} listing pages`,
      );
      assert.ok(largestGapMs > 0 && largestGapMs < 10_000, `largest gap ${largestGapMs} ms`);
    }
  });
});
