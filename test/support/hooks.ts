import { DefaultLogger, Runtime } from '@temporalio/worker';
import { stopMoto } from './moto';
import { stopTemporalEnv } from './temporal';

// The AWS SDK warns that releases after early 2027 need Node 22; the pinned lockfile is fine on 20.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
// Workers in tests log only errors (expected activity failures are warnings).
Runtime.install({ logger: new DefaultLogger('ERROR') });

// Root hooks: servers shared by the whole run are stopped once at the end.
export const mochaHooks = {
  async afterAll(this: Mocha.Context) {
    this.timeout(60_000);
    await Promise.all([stopTemporalEnv(), stopMoto()]);
  },
};
