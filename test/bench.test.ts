// Keeps `npm run bench` working (tiny sizes; the numbers are not checked here, only the shape and
// the benchmark's own verification that every contact holds its chunk value).
import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { projectRoot } from '../src/paths';
import { tempDir } from './support/tmp';

describe('npm run bench (smoke run at tiny sizes)', function () {
  this.timeout(180_000);

  it('runs every scenario, verifies the values, and prints one JSON object', async () => {
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [
        join(projectRoot, 'dist/bench/run.js'),
        '--json',
        '--contacts',
        '3000',
        '--per-contact',
        '40',
        '--limited',
        '600',
        '--results-dir',
        await tempDir(),
      ],
      { timeout: 170_000, maxBuffer: 10 * 1024 * 1024 },
    );
    const report = JSON.parse(stdout);
    assert.equal(report.contacts, 3000);
    for (const key of ['seconds', 'contactsPerSecond', 'maxHistoryEvents', 'peakWorkerRssMb']) {
      assert.equal(typeof report.pipeline[key], 'number', `pipeline.${key}`);
    }
    assert.ok(report.direct.contactsPerSecond > 0);
    assert.equal(report.perContact.contacts, 40);
    assert.ok(report.ratios.pipelineVsDirect > 0 && report.ratios.pipelineVsPerContact > 0);
    assert.equal(report.rateLimited.limitRps, 50);
    assert.ok(report.rateLimited.share429 >= 0 && report.rateLimited.share429 <= 1);
  });
});
