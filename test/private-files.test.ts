// What espresso leaves on disk is its user's alone: credentials, payload keys, contact ids.
// (`espresso start` with the dev server's files: test/start.test.ts.)
import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { projectRoot } from '../src/paths';
import { fileModes, notPrivate } from './support/file-modes';
import { tempDir } from './support/tmp';

describe('files espresso creates', function () {
  this.timeout(60_000);

  it('are readable by their owner only: folders 0700, files 0600 (a fresh data directory)', async () => {
    const dataDir = join(await tempDir(), 'data');
    // doctor creates the stores and probes them; it exits 1 here (no Temporal), which is no matter.
    await promisify(execFile)(process.execPath, [join(projectRoot, 'dist/src/cli/main.js'), 'doctor'], {
      env: { PATH: process.env.PATH, ESPRESSO_DATA_DIR: dataDir, TEMPORAL_ADDRESS: '127.0.0.1:1' },
      timeout: 50_000,
    }).catch(() => undefined);
    const entries = await fileModes(dataDir);
    assert.ok(
      entries.some((e) => e.path.endsWith('secret.key')),
      'doctor created no secret key',
    );
    assert.ok(
      entries.some((e) => e.dir && e.path.endsWith('blobs')),
      'doctor created no blob store',
    );
    assert.deepEqual(await notPrivate(dataDir), []);
  });
});
