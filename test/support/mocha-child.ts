import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { projectRoot } from '../../src/paths';
import { TEST_RUN_VARIABLE } from './leftovers';

/**
 * Runs one compiled fixture (test/support/*.fixture.ts, outside the suite's spec) in a mocha of its
 * own, with the suite's root hooks and a run tag of its own (its root hook reaps its own processes,
 * not this run's); for tests of what the harness and the root hooks report.
 */
export function runFixture(
  fixture: string,
  options: { timeoutMs: number; env?: NodeJS.ProcessEnv },
): Promise<{ code: number; out: string }> {
  return new Promise((resolve) =>
    execFile(
      process.execPath,
      [
        join(projectRoot, 'node_modules/mocha/bin/mocha.js'),
        '--no-config',
        '--require',
        join(projectRoot, 'dist/test/support/hooks.js'),
        '--timeout',
        String(options.timeoutMs),
        join(projectRoot, 'dist/test/support', `${fixture}.fixture.js`),
      ],
      {
        env: {
          ...process.env,
          [TEST_RUN_VARIABLE]: `${fixture}-${randomBytes(4).toString('hex')}`,
          ...options.env,
        },
      },
      (err, stdout, stderr) => resolve({ code: err ? ((err.code as number) ?? 1) : 0, out: stdout + stderr }),
    ),
  );
}
