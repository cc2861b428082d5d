import { TestWorkflowEnvironment } from '@temporalio/testing';
import { dataConverter, formatPayloadKeys, parsePayloadKeys } from '../../src/codec';
import { allSearchAttributes } from '../../src/temporal/constants';
import { resolveTemporalCli } from '../../src/tools';

let env: Promise<TestWorkflowEnvironment> | undefined;

/**
 * The tests' payload key ring (test-only, fixed so recorded histories stay decryptable): the shared
 * client, test workers, spawned processes and the replay test use it.
 */
export const testPayloadKeys = parsePayloadKeys(
  `test:${Buffer.alloc(32, 'espresso-test-key').toString('base64')}`,
);
/** For the environment of spawned espresso processes (ESPRESSO_PAYLOAD_KEYS). */
export const testPayloadKeysEnv = formatPayloadKeys(testPayloadKeys);

/** One real Temporal dev server for the whole run, started on first use (existing-path binary). */
export function temporalEnv(): Promise<TestWorkflowEnvironment> {
  env ??= (async () => {
    const cli = resolveTemporalCli();
    return TestWorkflowEnvironment.createLocal({
      client: { dataConverter: dataConverter(testPayloadKeys) },
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
