import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import { chmod, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { projectRoot } from '../src/paths';
import { tempDir } from './support/tmp';

/** Runs .ci/run with an `npm` that prints `report` for `npm test` and passes lint. */
async function ci(report: string, testStatus = 0): Promise<{ code: number; out: string }> {
  const bin = await tempDir();
  const npm = join(bin, 'npm');
  await writeFile(join(bin, 'report'), `${report}\n`);
  await writeFile(
    npm,
    `#!/bin/sh\nif [ "$1" = test ]; then cat "${join(bin, 'report')}"; exit ${testStatus}; fi\nexit 0\n`,
  );
  await chmod(npm, 0o755);
  return new Promise((resolve) =>
    execFile(
      'bash',
      [join(projectRoot, '.ci/run')],
      { env: { ...process.env, PATH: `${bin}:${process.env.PATH}` } },
      (err, stdout, stderr) => resolve({ code: err ? ((err.code as number) ?? 1) : 0, out: stdout + stderr }),
    ),
  );
}

describe('CI (.ci/run)', () => {
  it('passes a run with every test passing, and prints the counts', async () => {
    const { code, out } = await ci('  12 passing (3s)');
    assert.equal(code, 0, out);
    assert.match(out, /^12 passed, 0 failed$/m);
  });

  it('fails a run with a skipped test, naming the count', async () => {
    const { code, out } = await ci('  12 passing (3s)\n  2 pending');
    assert.equal(code, 1, out);
    assert.match(out, /12 passed, 0 failed, 2 skipped/);
    assert.match(out, /2 test\(s\) skipped; none is allowed/);
  });

  it('fails a run whose tests failed', async () => {
    const { code, out } = await ci('  11 passing (3s)\n  1 failing', 1);
    assert.notEqual(code, 0);
    assert.match(out, /11 passed, 1 failed/);
  });
});
