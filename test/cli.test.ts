// The `espresso` CLI as a user runs it: a real process, a real Sandbox ESP, a real Temporal server.
import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { projectRoot } from '../src/paths';
import { SandboxState } from '../src/sandbox/state';
import { startSandbox } from './processors/sandbox-harness';
import { endRunsOf, temporalEnv, testPayloadKeysEnv } from './support/temporal';
import { tempDir } from './support/tmp';

const cli = join(projectRoot, 'dist/src/cli/main.js');

describe('espresso CLI as package.json declares it', () => {
  it('runs as the declared bin after a build (npx espresso, npm link)', async () => {
    const { bin } = JSON.parse(readFileSync(join(projectRoot, 'package.json'), 'utf8')) as {
      bin: Record<string, string>;
    };
    // Executed as a program, not through node: the shebang and the executable bit must both hold.
    const { stdout } = await promisify(execFile)(join(projectRoot, bin.espresso!), ['--help']);
    assert.match(stdout, /Usage: espresso/);
  });
});

describe('espresso CLI: connect and configurations', function () {
  this.timeout(60_000);
  let sandbox: Awaited<ReturnType<typeof startSandbox>>;
  let env: NodeJS.ProcessEnv;
  let temporalAddress: string;
  /** Configurations connected here: their first runs wait on the real task queue, no worker here. */
  const connected: string[] = [];

  before(async () => {
    sandbox = await startSandbox(SandboxState.demo(10));
    temporalAddress = (await temporalEnv()).address;
    env = {
      ...process.env,
      ESPRESSO_DATA_DIR: await tempDir(),
      ESPRESSO_SANDBOX_URL: sandbox.url,
      TEMPORAL_ADDRESS: temporalAddress,
      ESPRESSO_PAYLOAD_KEYS: testPayloadKeysEnv,
      ESPRESSO_TEMPORAL_UI_URL: 'http://ui.example:8233',
    };
  });
  after(async () => {
    await endRunsOf(connected);
    await sandbox.stop();
  });

  const espresso = async (args: string[], input?: string) => {
    const child = promisify(execFile)(process.execPath, [cli, ...args], { env });
    if (input !== undefined) {
      child.child.stdin!.end(input);
    }
    try {
      const { stdout, stderr } = await child;
      return { code: 0, stdout, stderr };
    } catch (err) {
      const e = err as { code: number; stdout: string; stderr: string };
      return { code: e.code, stdout: e.stdout, stderr: e.stderr };
    }
  };

  it('refuses an invalid key without echoing it, and stores nothing', async () => {
    const out = await espresso([
      'connect',
      'sandbox',
      '--api-key',
      'sk_PLANTED_bad_key',
      '--list',
      'list_newsletter',
    ]);
    assert.equal(out.code, 1);
    assert.match(out.stderr, /ESP answered 401 \(credentials not accepted\): the API key is not valid/);
    assert.ok(!(out.stdout + out.stderr).includes('sk_PLANTED_bad_key'));
    assert.match((await espresso(['configurations', 'list'])).stdout, /no configurations yet/);
  });

  it('asks for a list when the account has several, and names unknown ESPs', async () => {
    const noList = await espresso(['connect', 'sandbox', '--api-key', 'sandbox-demo-key']);
    assert.equal(noList.code, 1);
    assert.match(
      noList.stderr,
      /2 lists; choose one of: list_newsletter \(Morning Newsletter\), list_offers/,
    );
    const unknown = await espresso(['connect', 'mailchimpx', '--api-key', 'x']);
    assert.match(unknown.stderr, /unknown ESP "mailchimpx"; known: mailchimp, .*sandbox/);
  });

  it('connects with a key read from stdin, starts the first run, and updates in place when run again', async () => {
    const first = await espresso(
      ['connect', 'sandbox', '--api-key', '-', '--list', 'list_newsletter'],
      'sandbox-demo-key\n',
    );
    assert.equal(first.code, 0, first.stderr);
    const id = /connected (cfg_[a-z0-9]+)/.exec(first.stdout)![1]!;
    connected.push(id);
    const runId = new RegExp(
      `first run started: (sync/${id}/\\d{4}-\\d{2}-\\d{2}/first-run-\\d{6}-[a-z0-9]{4})`,
    ).exec(first.stdout)![1]!;
    assert.match(first.stdout, /http:\/\/ui\.example:8233\/namespaces\/default\/workflows\/sync%2F/);
    const { client } = await temporalEnv();
    const description = await client.workflow.getHandle(runId).describe();
    assert.equal(description.type, 'configurationSyncWorkflow');

    const again = await espresso([
      'connect',
      'sandbox',
      '--api-key',
      'sandbox-demo-key',
      '--list',
      'list_newsletter',
      '--no-first-run',
    ]);
    assert.match(again.stdout, new RegExp(`updated ${id}`));

    const table = await espresso(['configurations', 'list']);
    assert.match(table.stdout, /^id\s+esp\s+account\s+list\s+status\s+last run/m);
    assert.match(
      table.stdout,
      new RegExp(`${id}\\s+sandbox\\s+Demo Coffee Roasters\\s+list_newsletter\\s+active`),
    );
    const json = JSON.parse((await espresso(['configurations', 'list', '--json'])).stdout);
    assert.equal(json.length, 1);
    assert.ok(!JSON.stringify(json).includes('sandbox-demo-key'), 'credentials in the listing');

    assert.match((await espresso(['configurations', 'disable', id])).stdout, new RegExp(`${id} is disabled`));
    assert.equal(
      JSON.parse((await espresso(['configurations', 'show', id])).stdout).configuration.status,
      'disabled',
    );
    assert.match((await espresso(['configurations', 'enable', id])).stdout, /is active/);
    assert.match(
      (await espresso(['configurations', 'show', 'cfg_nope000000'])).stderr,
      /no configuration cfg_nope000000/,
    );
  });
});
