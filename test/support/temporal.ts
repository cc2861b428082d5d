import { TestWorkflowEnvironment } from '@temporalio/testing';
import { allSearchAttributes } from '../../src/temporal/constants';
import { resolveTemporalCli } from '../../src/tools';

let env: Promise<TestWorkflowEnvironment> | undefined;

/** One real Temporal dev server for the whole run, started on first use (existing-path binary). */
export function temporalEnv(): Promise<TestWorkflowEnvironment> {
  env ??= (async () => {
    const cli = resolveTemporalCli();
    return TestWorkflowEnvironment.createLocal({
      server: {
        executable:
          cli.source === 'sdk-download'
            ? { type: 'cached-download', version: cli.version }
            : { type: 'existing-path', path: cli.path },
        ip: '127.0.0.1',
        searchAttributes: allSearchAttributes,
        extraArgs: ['--log-level', 'error'],
      },
    });
  })();
  return env;
}

export async function stopTemporalEnv(): Promise<void> {
  if (!env) return;
  const started = await env.catch(() => undefined);
  env = undefined;
  await started?.teardown();
}
