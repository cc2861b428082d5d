import { DefaultLogger, Runtime } from '@temporalio/worker';
import { startClusterBuild, stopClusterBuild } from './cluster-build';
import { failIfStillAliveAfter } from './handles';
import { reapLeftovers, tagTestRun } from './leftovers';
import { stopMoto } from './moto';
import { reapTemporalLeftovers, stopTemporalEnv } from './temporal';

// The AWS SDK warns that releases after early 2027 need Node 22; the pinned lockfile is fine on 20.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
// Workers in tests log only errors (expected activity failures are warnings).
Runtime.install({ logger: new DefaultLogger('ERROR') });

// Everything the run starts carries the run's tag, so leaks are found at the end.
tagTestRun();

// Root hooks: the cluster's binaries start building in the background (support/cluster-build.ts).
// Servers shared by the whole run are stopped once at the end, after checking that no
// test left a workflow running on the real task queue or a schedule behind (a later test's worker
// would pick them up); then no process the run started may be alive. A leak fails the run, naming
// what leaked, after ending it. Last, the run must end by itself (no --exit): a handle still open
// 10 s later fails it, named.
export const mochaHooks = {
  beforeAll() {
    startClusterBuild();
  },
  async afterAll(this: Mocha.Context) {
    this.timeout(60_000);
    try {
      await stopClusterBuild();
      await endSharedServers();
    } finally {
      failIfStillAliveAfter(10_000);
    }
  },
};

async function endSharedServers(): Promise<void> {
  const onServer = await reapTemporalLeftovers().catch((err: unknown) => [`(not checked: ${String(err)})`]);
  await Promise.all([stopTemporalEnv(), stopMoto()]);
  const leftovers = await reapLeftovers();
  const problems = [
    ...(onServer.length
      ? [`left on the Temporal server by the tests (ended now):\n${onServer.map((l) => `  ${l}`).join('\n')}`]
      : []),
    ...(leftovers.length
      ? [
          `processes started by the tests were still running at the end (killed now):\n${leftovers
            .map((p) => `  pid ${p.pid}: ${p.command}`)
            .join('\n')}`,
        ]
      : []),
  ];
  if (problems.length) throw new Error(problems.join('\n'));
}
