// What espresso leaves on disk is its user's alone: credentials, payload keys, contact ids.
import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { projectRoot } from '../src/paths';
import { tempDir } from './support/tmp';

async function modes(root: string): Promise<Array<{ path: string; dir: boolean; mode: number }>> {
  const out = [];
  for (const entry of await readdir(root, { withFileTypes: true })) {
    const path = join(root, entry.name);
    out.push({ path, dir: entry.isDirectory(), mode: (await stat(path)).mode & 0o777 });
    if (entry.isDirectory()) out.push(...(await modes(path)));
  }
  return out;
}

describe('files espresso creates', function () {
  this.timeout(60_000);

  it('are readable by their owner only: folders 0700, files 0600 (a fresh data directory)', async () => {
    const dataDir = join(await tempDir(), 'data');
    // doctor creates the stores and probes them; it exits 1 here (no Temporal), which is no matter.
    await promisify(execFile)(process.execPath, [join(projectRoot, 'dist/src/cli/main.js'), 'doctor'], {
      env: { PATH: process.env.PATH, ESPRESSO_DATA_DIR: dataDir, TEMPORAL_ADDRESS: '127.0.0.1:1' },
      timeout: 50_000,
    }).catch(() => undefined);
    const entries = [
      { path: dataDir, dir: true, mode: (await stat(dataDir)).mode & 0o777 },
      ...(await modes(dataDir)),
    ];
    assert.ok(
      entries.some((e) => e.path.endsWith('secret.key')),
      'doctor created no secret key',
    );
    assert.ok(
      entries.some((e) => e.dir && e.path.endsWith('blobs')),
      'doctor created no blob store',
    );
    for (const e of entries) {
      assert.equal(e.mode.toString(8), e.dir ? '700' : '600', `${e.path} is ${e.mode.toString(8)}`);
    }
  });
});
