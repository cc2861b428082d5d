// `espresso cluster` (what `npm run cluster` runs) at a small size, for real: PostgreSQL, the Temporal
// server and its Web UI built from the Go module proxy, moto, two workers, web and Sandbox, on free
// ports in a temp data directory. On a fresh machine the first start builds the servers (minutes).
import { strict as assert } from 'node:assert';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { findGo, freePortBeside, freeTemporalPort } from '../src/cluster/temporal-server';
import { projectRoot } from '../src/paths';
import { resolveTemporalCli } from '../src/tools';
import { notPrivate } from './support/file-modes';
import { clusterBuilt } from './support/cluster-build';
import { alive, descendants, parentOf, waitFor } from './support/processes';
import { tempDir } from './support/tmp';

const cli = join(projectRoot, 'dist/src/cli/main.js');
const PROVISIONING_MS = 15 * 60_000;

describe('espresso cluster (the production topology on one machine)', function () {
  this.timeout(PROVISIONING_MS + 5 * 60_000);
  let env: NodeJS.ProcessEnv;
  let args: string[];
  const running: ChildProcess[] = [];

  before(async () => {
    // The run's background build of the cluster's binaries (support/cluster-build.ts), if any.
    await clusterBuilt();
    const dataDir = await tempDir();
    const temporal = await freeTemporalPort();
    const taken = new Set<number>();
    const port = async () => String(await freePortBeside(temporal, taken));
    env = {
      ...process.env,
      ESPRESSO_DATA_DIR: dataDir,
      TEMPORAL_ADDRESS: `127.0.0.1:${temporal}`,
      ESPRESSO_WEB_PORT: await port(),
      ESPRESSO_SANDBOX_PORT: await port(),
      ESPRESSO_TEMPORAL_UI_PORT: await port(),
      ESPRESSO_LOG_LEVEL: 'warn',
    };
    args = [cli, 'cluster', '--workers', '2', '--postgres-port', await port(), '--moto-port', await port()];
  });

  // Stopped the way an operator would, so PostgreSQL, Temporal and moto stop with it even when a
  // check failed halfway (SIGKILL would leave them to the next start's clean-up).
  after(async () => {
    const exited = (p: ChildProcess) => p.exitCode !== null || p.signalCode !== null;
    for (const proc of running.filter((p) => !exited(p))) {
      proc.kill('SIGINT');
      await waitFor(() => exited(proc), 60_000, 'cluster exit').catch(() => proc.kill('SIGKILL'));
    }
  });

  async function startCluster(): Promise<{ proc: ChildProcess; output: () => string; readyMs: number }> {
    const started = Date.now();
    const proc = spawn(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    running.push(proc);
    let output = '';
    proc.stdout!.on('data', (d) => (output += d));
    proc.stderr!.on('data', (d) => (output += d));
    await waitFor(
      () => output.includes('press Ctrl-C to stop') || proc.exitCode !== null,
      PROVISIONING_MS,
      'cluster ready',
    );
    assert.equal(proc.exitCode, null, `cluster exited early:\n${output}`);
    const readyMs = Date.now() - started;
    console.log(`      (cluster ready in ${(readyMs / 1000).toFixed(1)} s)`);
    return { proc, output: () => output, readyMs };
  }

  /** The CLI with the environment the cluster wrote for it. */
  function espresso(...cliArgs: string[]): string {
    const clusterEnv = Object.fromEntries(
      readFileSync(join(env.ESPRESSO_DATA_DIR!, 'cluster', 'env'), 'utf8')
        .split('\n')
        .filter((line) => /^[A-Z0-9_]+=/.test(line))
        .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]),
    );
    const out = spawnSync(process.execPath, [cli, ...cliArgs], {
      env: { ...env, ...clusterEnv },
      encoding: 'utf8',
      timeout: 300_000,
    });
    assert.equal(out.status, 0, `espresso ${cliArgs.join(' ')}:\n${out.stdout}${out.stderr}`);
    return out.stdout;
  }

  async function stopCluster(proc: ChildProcess): Promise<void> {
    const children = descendants(proc.pid!);
    proc.kill('SIGINT');
    await waitFor(() => proc.exitCode !== null, 120_000, 'cluster exit');
    assert.equal(proc.exitCode, 0);
    for (const pid of children) assert.ok(!alive(pid), `process ${pid} outlived the cluster`);
  }

  it('syncs a Sandbox list through PostgreSQL-backed Temporal, moto and two workers; stops everything; keeps its data', async () => {
    const first = await startCluster();
    assert.match(first.output(), /workers +2/);
    const processes = descendants(first.proc.pid!).map((pid) =>
      readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' '),
    );
    for (const [what, pattern] of [
      ['PostgreSQL', /postgres -D /],
      ['Temporal server', /temporal-server-[\d.]+\/server --config-file/],
      ['Temporal Web UI', /temporal-ui-[\d.]+\/server --root/],
      ['moto', /moto_server/],
      ['Sandbox', /sandbox\/main\.js/],
      ['web', /web\/main\.js/],
    ] as const) {
      assert.ok(
        processes.some((c) => pattern.test(c)),
        `no ${what} among:\n${processes.join('\n')}`,
      );
    }
    assert.equal(processes.filter((c) => /worker\/main\.js/.test(c)).length, 2, processes.join('\n'));
    // Nothing of it is reachable from another machine: every port it listens on is on loopback.
    const listening = listeners(descendants(first.proc.pid!));
    assert.ok(listening.length >= 8, `too few listeners found:\n${listening.join('\n')}`);
    assert.deepEqual(
      listening.filter((l) => !/^(127\.0\.0\.1|\[::1\]):\d+ /.test(l)),
      [],
      'listening beyond 127.0.0.1',
    );

    const connected = espresso(
      'connect',
      'sandbox',
      '--api-key',
      'sandbox-demo-key',
      '--list',
      'list_newsletter',
      '--no-first-run',
    );
    const id = /connected (cfg_\w+)/.exec(connected)?.[1];
    assert.ok(id, connected);
    assert.match(espresso('sync', id), /completed: exported 1000, updated 1000, rejected 0/);

    // The Sandbox holds a value for every contact of the list.
    let cursor: string | null = '';
    let contacts = 0;
    do {
      const page = (await (
        await fetch(
          `http://127.0.0.1:${env.ESPRESSO_SANDBOX_PORT}/v1/lists/list_newsletter/contacts?limit=500${cursor ? `&cursor=${cursor}` : ''}`,
          { headers: { 'x-api-key': 'sandbox-demo-key' } },
        )
      ).json()) as {
        contacts: Array<{ id: string; fields: { lcee: string | null } }>;
        next_cursor: string | null;
      };
      for (const contact of page.contacts) assert.ok(contact.fields.lcee, `${contact.id} has no lcee`);
      contacts += page.contacts.length;
      cursor = page.next_cursor;
    } while (cursor);
    assert.equal(contacts, 1000);

    // The Web UI shows the run, and decrypts its payloads through the web server's codec route.
    const ui = `http://127.0.0.1:${env.ESPRESSO_TEMPORAL_UI_PORT}/api/v1`;
    let runs: Array<{ type: { name: string }; status: string }> = [];
    for (let i = 0; i < 50 && !runs.some((r) => r.type.name === 'configurationSyncWorkflow'); i++) {
      if (i) await new Promise((r) => setTimeout(r, 200));
      runs =
        ((await (await fetch(`${ui}/namespaces/default/workflows`)).json()) as { executions?: typeof runs })
          .executions ?? [];
    }
    const run = runs.find((r) => r.type.name === 'configurationSyncWorkflow');
    assert.equal(run?.status, 'WORKFLOW_EXECUTION_STATUS_COMPLETED', JSON.stringify(runs));
    // So does the `temporal` CLI (docs/operations.md), pointed at the cluster's frontend.
    const cli = resolveTemporalCli();
    assert.ok('path' in cli, 'no temporal CLI provisioned');
    const temporalList = spawnSync(
      cli.path,
      ['workflow', 'list', '--address', env.TEMPORAL_ADDRESS!, '--output', 'json'],
      { encoding: 'utf8' },
    );
    assert.match(temporalList.stdout, /"name": "configurationSyncWorkflow"/, temporalList.stderr);
    const settings = (await (await fetch(`${ui}/settings`)).json()) as { Codec: { Endpoint: string } };
    assert.ok(
      settings.Codec.Endpoint.startsWith(`http://localhost:${env.ESPRESSO_WEB_PORT}/codec/`),
      settings.Codec.Endpoint,
    );

    await stopCluster(first.proc);
    // Its files (PostgreSQL's and Temporal's data, moto's recording, keys, logs) are its user's alone.
    // As root, PostgreSQL runs as its own user: the folders above its data let it pass (no listing).
    const dataDir = env.ESPRESSO_DATA_DIR!;
    const passable = process.getuid?.() === 0 ? [dataDir, join(dataDir, 'cluster')] : [];
    assert.deepEqual(
      (await notPrivate(dataDir)).filter((e) => !passable.some((dir) => e === `${dir} is 711`)),
      [],
    );

    // Same data directory: the configuration (in moto's S3) and its run (in Temporal, on PostgreSQL) are there.
    const second = await startCluster();
    const listed = JSON.parse(espresso('configurations', 'list', '--json')) as Array<{ id: string }>;
    assert.deepEqual(
      listed.map((c) => c.id),
      [id],
    );
    assert.match(espresso('configurations', 'show', id), /"status": "completed"/);

    // Killed outright: workers, web and Sandbox exit by themselves; the next start stops the
    // PostgreSQL, Temporal, Web UI and moto left running, and still finds the data.
    const orphans = descendants(second.proc.pid!);
    second.proc.kill('SIGKILL');
    const servers = ['cluster-postgresql', 'cluster-temporal', 'cluster-temporal-ui', 'cluster-moto'].map(
      (name) => Number(readFileSync(join(env.ESPRESSO_DATA_DIR!, 'run', `${name}.pid`), 'utf8')),
    );
    await waitFor(
      () =>
        orphans.filter((p) => !servers.includes(p) && !servers.includes(parentOf(p))).every((p) => !alive(p)),
      15_000,
      'workers, web and Sandbox exit',
    );
    const third = await startCluster();
    for (const name of ['Temporal server', 'Temporal Web UI', 'moto server', 'PostgreSQL']) {
      assert.match(
        third.output(),
        new RegExp(`stopping a ${name} \\(pid \\d+\\) left over from an earlier run`),
      );
    }
    for (const pid of servers) assert.ok(!alive(pid), `left-over server ${pid} still runs`);
    assert.match(espresso('configurations', 'list'), new RegExp(id));
    await stopCluster(third.proc);
  });
});

describe('espresso cluster provisioning', () => {
  it('names what is missing when Go is absent', () => {
    assert.throws(
      () => findGo('/nonexistent', '/nonexistent/go/bin/go'),
      /the Temporal server v[\d.]+ needs Go \(1\.26 or newer\), which is neither on PATH nor at \/nonexistent\/go\/bin\/go: install it from https:\/\/go\.dev\/dl\//,
    );
  });
});

/** `<address>:<port> <program>` for each TCP port one of `pids` listens on (from `ss`). */
function listeners(pids: number[]): string[] {
  const out = spawnSync('ss', ['-Hltnp'], { encoding: 'utf8' });
  assert.equal(out.status, 0, out.stderr);
  return out.stdout
    .split('\n')
    .map((line) => line.trim().split(/\s+/))
    .filter((cols) => cols.length >= 6)
    .flatMap(([, , , local, , users]) => {
      const pid = Number(/pid=(\d+)/.exec(users!)?.[1]);
      const program = /\("([^"]+)"/.exec(users!)?.[1];
      return pids.includes(pid) ? [`${local} ${program}`] : [];
    });
}
