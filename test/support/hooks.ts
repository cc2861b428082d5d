import { DefaultLogger, Runtime } from '@temporalio/worker';
import { reapLeftovers, tagTestRun } from './leftovers';
import { stopMoto } from './moto';
import { stopTemporalEnv } from './temporal';

// The AWS SDK warns that releases after early 2027 need Node 22; the pinned lockfile is fine on 20.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
// Workers in tests log only errors (expected activity failures are warnings).
Runtime.install({ logger: new DefaultLogger('ERROR') });

// Everything the run starts carries the run's tag, so leaks are found at the end.
tagTestRun();

// Root hooks: servers shared by the whole run are stopped once at the end; then no process the
// run started may be alive (a leak fails the run, naming the process, after killing it).
export const mochaHooks = {
  async afterAll(this: Mocha.Context) {
    this.timeout(60_000);
    await Promise.all([stopTemporalEnv(), stopMoto()]);
    const leftovers = await reapLeftovers();
    if (leftovers.length) {
      throw new Error(
        `processes started by the tests were still running at the end (killed now):\n${leftovers
          .map((p) => `  pid ${p.pid}: ${p.command}`)
          .join('\n')}`,
      );
    }
  },
};
