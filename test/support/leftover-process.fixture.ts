// Run by test/leftovers.test.ts in a mocha of its own (its name is outside the suite's spec): a
// test that passes but leaves a process running, orphaned as a leaked worker is; the root hook must
// fail the run, naming it, and kill it.
import { spawn } from 'node:child_process';

describe('a test that stops nothing it started', () => {
  it('leaves a process running', () => {
    const leaked = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000) // leaked-by-fixture'], {
      detached: true,
      stdio: 'ignore',
    });
    leaked.unref();
    console.log(`fixture process pid ${leaked.pid}`);
  });
});
