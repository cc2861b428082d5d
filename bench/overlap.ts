// For `npm run chaos -- --overlap`: the same configuration started again, while its run writes,
// through every entry point a person has: `espresso sync`, the admin page's "Run now", the
// README's `temporal workflow start`, and `espresso redispatch` of an earlier run. Each must be
// refused (or end `busy`) and write nothing.
import { execFile } from 'node:child_process';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { projectRoot } from '../src/paths';
import { TASK_QUEUE } from '../src/temporal/constants';
import { resolveTemporalCli } from '../src/tools';
import { createApp } from '../src/web/app';
import type { benchDeps } from './scenarios';
import type { Stack } from './stack';

const run = promisify(execFile);
const ADMIN_TOKEN = 'bench-admin-token-0123456789abcdef';

export type EntryPoint = 'cli-sync' | 'admin-run-now' | 'temporal-workflow-start' | 'cli-redispatch';
export const ENTRY_POINTS: EntryPoint[] = [
  'cli-sync',
  'admin-run-now',
  'temporal-workflow-start',
  'cli-redispatch',
];

/** Starts the configuration through one entry point; says whether it was held off, and how. */
export async function startAgain(
  stack: Stack,
  deps: ReturnType<typeof benchDeps>,
  entry: EntryPoint,
  configurationId: string,
  runDate: string,
  earlierRun: string,
): Promise<{ entry: EntryPoint; heldOff: boolean; how: string }> {
  const cli = (...args: string[]) =>
    run(process.execPath, [join(projectRoot, 'dist/src/cli/main.js'), ...args], {
      env: stack.processEnv,
      timeout: 60_000,
    }).then(
      (out) => ({ ok: true, text: out.stdout + out.stderr }),
      (err: { stdout?: string; stderr?: string }) => ({
        ok: false,
        text: `${err.stdout ?? ''}${err.stderr ?? ''}`,
      }),
    );
  if (entry === 'cli-sync' || entry === 'cli-redispatch') {
    const out =
      entry === 'cli-sync'
        ? await cli('sync', configurationId, '--no-wait')
        : await cli('redispatch', configurationId, earlierRun, '--no-wait');
    return {
      entry,
      heldOff: !out.ok && /being written by run/.test(out.text),
      how: out.text.trim().split('\n').at(-1) ?? '',
    };
  }
  if (entry === 'admin-run-now') {
    return withWebServer(stack, deps, async (base) => {
      const auth = { authorization: `Bearer ${ADMIN_TOKEN}` };
      const page = await fetch(`${base}/admin`, { headers: auth });
      const cookie = (page.headers.get('set-cookie') ?? '').split(';')[0]!;
      const csrf = /name="_csrf" value="([^"]+)"/.exec(await page.text())?.[1] ?? '';
      const res = await fetch(`${base}/admin/configurations/${configurationId}/run`, {
        method: 'POST',
        redirect: 'manual',
        headers: { ...auth, cookie, 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ _csrf: csrf }),
      });
      return { entry, heldOff: res.status === 409, how: `admin answered ${res.status}` };
    });
  }
  // The README's full resync, started straight on Temporal: no check before it starts; the run
  // itself finds the writer held and ends busy.
  const workflowId = `sync/${configurationId}/${runDate}/full`;
  const temporal = resolveTemporalCli();
  if (temporal.source === 'sdk-download')
    throw new Error('--overlap needs the Temporal CLI: run `npm run bootstrap`');
  // As the README types it: the input goes through the web server's codec endpoint, encrypted
  // (workers refuse plaintext payloads).
  await withWebServer(stack, deps, (base) =>
    run(
      temporal.path,
      [
        'workflow',
        'start',
        '--type',
        'configurationSyncWorkflow',
        '--task-queue',
        TASK_QUEUE,
        '--workflow-id',
        workflowId,
        '--input',
        JSON.stringify({ configurationId, runDate, mode: 'full' }),
        '--address',
        stack.env.address,
        '--codec-endpoint',
        `${base}/codec`,
        '--codec-auth',
        `Bearer ${ADMIN_TOKEN}`,
      ],
      { timeout: 60_000 },
    ),
  );
  const result = (await stack.env.client.workflow.getHandle(workflowId).result()) as {
    status: string;
    exported: number;
    reason?: string;
  };
  // Busy; or, when the run it raced had just ended, a full resync that found every value set.
  const heldOff = result.status === 'busy' || (result.status === 'completed' && result.exported === 0);
  return { entry, heldOff, how: `${result.status}: ${result.reason ?? `exported ${result.exported}`}` };
}

/** A web server on the bench's stores for the length of `use`: the admin page and the codec endpoint. */
async function withWebServer<T>(
  stack: Stack,
  deps: ReturnType<typeof benchDeps>,
  use: (base: string) => Promise<T>,
): Promise<T> {
  const server = createApp({
    stores: deps.stores,
    processors: deps.processors,
    temporal: async () => stack.env.connection,
    temporalNamespace: 'default',
    temporalUiUrl: 'http://127.0.0.1:8233',
    payloadKeys: stack.env.payloadKeys,
    web: {
      publicUrl: 'http://127.0.0.1',
      sessionSecret: 'bench-session-secret-0123456789abcdef',
      admin: { token: ADMIN_TOKEN },
    },
  }).listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  try {
    return await use(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  } finally {
    server.close();
  }
}
