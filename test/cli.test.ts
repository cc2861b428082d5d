// The `espresso` CLI as a user runs it: a real process, a real Sandbox ESP, a real Temporal server.
import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { loadConfig } from '../src/config';
import { projectRoot } from '../src/paths';
import { runFiles } from '../src/runs/files';
import { createStores } from '../src/storage';
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
  /** `espresso connect` of the demo Sandbox list, with `extra` options. */
  const connectDemo = (...extra: string[]) =>
    espresso(['connect', 'sandbox', '--api-key', 'sandbox-demo-key', '--list', 'list_newsletter', ...extra]);

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

    const again = await connectDemo('--no-first-run');
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
    // Connecting the same account and list again never enables what an operator disabled.
    const reconnect = await connectDemo();
    assert.match(reconnect.stdout, /it stays disabled, as an operator set it/);
    assert.doesNotMatch(reconnect.stdout, /first run/, 'a first run was asked for');
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

  const connectedId = async () => {
    const out = await connectDemo('--no-first-run');
    assert.equal(out.code, 0, out.stderr);
    return /(?:connected|updated) (cfg_[a-z0-9]+)/.exec(out.stdout)![1]!;
  };
  const stores = () => createStores(loadConfig(env).storage);

  it('README: a bad date, run or configuration id is refused with a message naming it, exit code 1, and nothing is started or written', async () => {
    const id = await connectedId();
    const since = new Date().toISOString();
    const blobsBefore = await stores().blobs.list('');
    const refused: Array<[string[], RegExp]> = [
      [['sync', id, '--date', '2026-99-99', '--dry-run'], /run date 2026-99-99: not a day of the calendar/],
      [['sync', id, '--date', '28.11.2026'], /run date 28\.11\.2026: /],
      [['sync', 'nope', '--dry-run'], /configuration id nope: /],
      [['sync', 'cfg_unknown00000', '--dry-run'], /no configuration cfg_unknown00000/],
      [['redispatch', 'cfg_unknown00000', '2026-11-28'], /no configuration cfg_unknown00000/],
      [['redispatch', id, '2026-13-01'], /run date 2026-13-01: not a day of the calendar/],
      [['redispatch', id, '2026-11-28_Manual!'], /run 2026-11-28_Manual!: /],
      [['redispatch', id, '2026-11-28'], new RegExp(`run 2026-11-28 of ${id} has no finished export`)],
      [['sync', id, '--replace-foreign-values'], /--replace-foreign-values needs --full/],
      [['configurations', 'list', '--after', 'nope'], /--after: "nope" is not a configuration id/],
      [['configurations', 'disable', 'cfg_unknown00000'], /no configuration cfg_unknown00000/],
    ];
    for (const [args, message] of refused) {
      const out = await espresso(args);
      assert.equal(out.code, 1, `${args.join(' ')} exited ${out.code}`);
      assert.match(out.stderr, message, args.join(' '));
      assert.equal(out.stdout, '', `${args.join(' ')} printed on stdout`);
    }
    assert.deepEqual(await stores().blobs.list(''), blobsBefore, 'a refused command wrote files');
    const { client } = await temporalEnv();
    for await (const w of client.workflow.list({
      query: `WorkflowId STARTS_WITH "sync/${id}/" AND StartTime > "${since}"`,
    })) {
      assert.fail(`a refused command started ${w.workflowId}`);
    }
  });

  it('README: `configurations enable` of a configuration in needs_reauth asks its ESP first: refused while the credentials are, active once they work', async () => {
    const id = await connectedId();
    const { configurations, secrets } = stores();
    const { credentialsSecretId } = await configurations.get(id);
    const working = await secrets.get(credentialsSecretId);
    await secrets.put(credentialsSecretId, JSON.stringify({ kind: 'apiKey', apiKey: 'revoked-key-1' }));
    await configurations.update(id, () => ({ status: 'needs_reauth', statusReason: 'revoked' }));
    const refused = await espresso(['configurations', 'enable', id]);
    assert.equal(refused.code, 1, refused.stdout);
    assert.match(refused.stderr, new RegExp(`still refuses the stored credentials of ${id}`));
    assert.doesNotMatch(refused.stderr + refused.stdout, /revoked-key-1/);
    assert.equal((await configurations.get(id)).status, 'needs_reauth');
    await secrets.put(credentialsSecretId, working);
    assert.match((await espresso(['configurations', 'enable', id])).stdout, new RegExp(`${id} is active`));
    assert.equal((await configurations.get(id)).status, 'active');
  });

  it("docs/runs.md: redispatch of a dry run's folder is refused, naming it (a dry run of this version or of an earlier one)", async () => {
    const id = await connectedId();
    const since = new Date().toISOString();
    const { blobs } = stores();
    const put = (folder: string, file: string, body: object) =>
      blobs.put(`${runFiles.prefix(id, folder)}${file}`, JSON.stringify(body));
    const manifest = { chunkCount: 1, contacts: 1, alreadySet: 0, mode: 'incremental', finishedAt: since };
    const line = JSON.stringify({ contactId: 'ct_0000001', value: 'value_0000000000000001' }) + '\n';
    const current = '2026-11-27_dry-run-080503-abcd';
    await put(current, 'run.json', { workflowId: 'w', runId: 'r', mode: 'incremental', dryRun: true });
    await put(current, 'export.json', { ...manifest, dryRun: true });
    // Earlier versions marked a dry run in its summary only.
    const earlier = '2026-11-26_dry-run-060000-wxyz';
    await put(earlier, 'export.json', manifest);
    await put(earlier, 'summary.json', { dryRun: true, status: 'completed' });
    for (const folder of [current, earlier]) {
      await blobs.put(runFiles.contacts(id, folder, 1), line);
      const out = await espresso(['redispatch', id, folder, '--no-wait']);
      assert.equal(out.code, 1, out.stdout);
      assert.match(
        out.stderr,
        new RegExp(`run ${folder} of ${id} is a dry run: its values were never meant for the ESP`),
      );
    }
    const { client } = await temporalEnv();
    for await (const w of client.workflow.list({
      query: `WorkflowId STARTS_WITH "sync/${id}/" AND StartTime > "${since}"`,
    })) {
      assert.fail(`redispatch started ${w.workflowId}`);
    }
  });

  it('docs/operations.md: a command logs on standard error; its standard output is what it prints (the alert of a re-authorizing connect)', async () => {
    const id = await connectedId();
    await stores().configurations.update(id, () => ({
      status: 'needs_reauth',
      statusReason: 'the API key is not valid',
    }));
    const out = await connectDemo('--no-first-run');
    assert.equal(out.code, 0, out.stderr);
    assert.equal(out.stdout.trim().split('\n').length, 1, out.stdout);
    assert.match(out.stdout, new RegExp(`^updated ${id}: sandbox account`));
    const alert = JSON.parse(
      out.stderr
        .trim()
        .split('\n')
        .find((l) => l.includes('ALERT'))!,
    ) as {
      alert: { status: string; configurationId: string };
    };
    assert.deepEqual([alert.alert.status, alert.alert.configurationId], ['active', id]);
    assert.ok(!(out.stdout + out.stderr).includes('sandbox-demo-key'), 'the key in the output');
  });
});
