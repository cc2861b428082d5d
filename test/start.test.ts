// `espresso start` (what `npm start` runs) as a user sees it: real processes, real ports.
import { strict as assert } from 'node:assert';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { tsToMs } from '@temporalio/common/lib/time';
import { projectRoot } from '../src/paths';
import { SCHEDULE_ID } from '../src/temporal/constants';
import { WORKER_ENV, WORKER_NODE_FLAGS } from '../src/worker/node-options';
import { notPrivate } from './support/file-modes';
import { freePort } from './support/ports';
import { alive, descendants, waitFor } from './support/processes';
import { tempDir } from './support/tmp';

const cli = join(projectRoot, 'dist/src/cli/main.js');

describe('espresso start (the npm start supervisor)', function () {
  this.timeout(180_000);
  let env: NodeJS.ProcessEnv;
  let webUrl: string;
  let temporalAddress: string;
  const running: ChildProcess[] = [];

  before(async () => {
    const [grpc, ui, web, sandbox] = [await freePort(), await freePort(), await freePort(), await freePort()];
    temporalAddress = `127.0.0.1:${grpc}`;
    webUrl = `http://127.0.0.1:${web}`;
    env = {
      ...process.env,
      ESPRESSO_DATA_DIR: await tempDir(),
      TEMPORAL_ADDRESS: temporalAddress,
      ESPRESSO_TEMPORAL_UI_PORT: String(ui),
      ESPRESSO_WEB_PORT: String(web),
      ESPRESSO_SANDBOX_PORT: String(sandbox),
      ESPRESSO_LOG_LEVEL: 'warn',
    };
  });

  after(() => running.forEach((p) => p.exitCode === null && p.kill('SIGKILL')));

  async function startStack(): Promise<{ proc: ChildProcess; output: () => string }> {
    const proc = spawn(process.execPath, [cli, 'start'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    running.push(proc);
    let output = '';
    proc.stdout!.on('data', (d) => (output += d));
    proc.stderr!.on('data', (d) => (output += d));
    await waitFor(() => output.includes('press Ctrl-C to stop') || proc.exitCode !== null, 120_000, 'ready');
    assert.equal(proc.exitCode, null, `start exited early:\n${output}`);
    return { proc, output: () => output };
  }

  it('starts Temporal, worker and web; doctor passes; SIGTERM stops every child; data survives a restart', async () => {
    const first = await startStack();
    assert.match(first.output(), /Temporal CLI \S+ at .*temporal/);
    assert.match(
      first.output(),
      new RegExp(`Temporal Web UI\\s+http://localhost:${env.ESPRESSO_TEMPORAL_UI_PORT}`),
    );

    const health = (await (await fetch(`${webUrl}/healthz`)).json()) as { status: string };
    assert.equal(health.status, 'ok', JSON.stringify(health));
    const ui = await fetch(`http://127.0.0.1:${env.ESPRESSO_TEMPORAL_UI_PORT}/`);
    assert.equal(ui.status, 200);
    // The Web UI decrypts payloads through the web server's codec route, and that route answers it.
    const settings = (await (
      await fetch(`http://127.0.0.1:${env.ESPRESSO_TEMPORAL_UI_PORT}/api/v1/settings`)
    ).json()) as { Codec: { Endpoint: string } };
    const codec = settings.Codec.Endpoint;
    assert.match(codec, new RegExp(`^http://localhost:${env.ESPRESSO_WEB_PORT}/codec/[\\w-]{43}$`));
    const decoded = await fetch(`${codec.replace('localhost', '127.0.0.1')}/decode`, {
      method: 'POST',
      headers: {
        origin: `http://localhost:${env.ESPRESSO_TEMPORAL_UI_PORT}`,
        'content-type': 'application/json',
        'x-namespace': 'default',
      },
      body: '{}',
    });
    assert.equal(decoded.status, 200);
    assert.deepEqual(await decoded.json(), { payloads: [] });
    assert.match(first.output(), new RegExp(`Sandbox ESP\\s+http://127.0.0.1:${env.ESPRESSO_SANDBOX_PORT}`));
    const lists = await fetch(`http://127.0.0.1:${env.ESPRESSO_SANDBOX_PORT}/v1/lists`, {
      headers: { 'x-api-key': 'sandbox-demo-key' },
    });
    assert.equal(lists.status, 200);

    const doctor = spawnSync(process.execPath, [cli, 'doctor'], { env, encoding: 'utf8', timeout: 60_000 });
    assert.equal(doctor.status, 0, doctor.stdout + doctor.stderr);
    assert.doesNotMatch(doctor.stdout, /FAIL/);
    assert.match(
      doctor.stdout,
      /ok +worker: answered a self-check in \d+ ms \(\d+ configurations\); its clock is within \d+ ms of the Temporal server's/,
    );
    assert.match(doctor.stdout, /ok +payload keys: 1 key\(s\) from secret payload-keys/);

    const children = descendants(first.proc.pid!);
    assert.ok(children.length >= 4, `expected dev server, sandbox, worker and web, got ${children}`);
    // The worker runs with its heap cap and malloc arenas (src/worker/node-options.ts).
    const workers = children.filter((pid) => procFile(pid, 'cmdline').includes('worker/main.js'));
    assert.equal(workers.length, 1, 'one worker process');
    const cmdline = procFile(workers[0]!, 'cmdline').split('\0');
    for (const flag of WORKER_NODE_FLAGS) assert.ok(cmdline.includes(flag), `worker without ${flag}`);
    const environ = procFile(workers[0]!, 'environ').split('\0');
    for (const [key, value] of Object.entries(WORKER_ENV))
      assert.ok(environ.includes(`${key}=${value}`), key);
    first.proc.kill('SIGTERM');
    await waitFor(() => first.proc.exitCode !== null, 60_000, 'supervisor exit');
    assert.equal(first.proc.exitCode, 0);
    for (const pid of children) assert.ok(!alive(pid), `child ${pid} outlived the supervisor`);
    // What the stack left on disk is its user's alone: the dev server's database (the run above
    // recorded in it), keys, stores, logs and pid files.
    assert.ok(existsSync(join(env.ESPRESSO_DATA_DIR!, 'temporal.sqlite')), 'no dev server database');
    assert.deepEqual(await notPrivate(env.ESPRESSO_DATA_DIR!), []);

    // Same data directory: the self-check run recorded by the first server is still there.
    const second = await startStack();
    const connection = await Connection.connect({ address: temporalAddress });
    const client = new Client({ connection });
    const runs = [];
    for await (const wf of client.workflow.list({ query: `WorkflowType = 'selfCheckWorkflow'` }))
      runs.push(wf);
    // README: `npm start` applies the daily schedule (06:00 UTC unless ESPRESSO_SCHEDULE_TIME).
    // (Raw: its action's input is encrypted, and this client has no payload keys.)
    const schedule = await connection.workflowService.describeSchedule({
      namespace: 'default',
      scheduleId: SCHEDULE_ID,
    });
    await connection.close();
    const next = new Date(tsToMs(schedule.info!.futureActionTimes![0]));
    assert.deepEqual([next.getUTCHours(), next.getUTCMinutes()], [6, 0]);
    assert.equal(runs.length, 1);
    assert.equal(runs[0]!.status.name, 'COMPLETED');
    // README, Troubleshooting: one supervisor per data directory, refused before any port is tried.
    const another = spawnSync(process.execPath, [cli, 'start'], { env, encoding: 'utf8', timeout: 60_000 });
    assert.notEqual(another.status, 0);
    assert.match(
      another.stdout + another.stderr,
      new RegExp(`another espresso start \\(pid ${second.proc.pid}\\) is using this data directory`),
    );

    // Killed outright: worker and web notice and exit; the next start cleans up the dev server.
    const orphans = descendants(second.proc.pid!);
    second.proc.kill('SIGKILL');
    const temporalPid = Number(readFileSync(join(env.ESPRESSO_DATA_DIR!, 'run/temporal.pid'), 'utf8'));
    await waitFor(
      () => orphans.filter((p) => p !== temporalPid).every((p) => !alive(p)),
      15_000,
      'orphans exit',
    );
    const third = await startStack();
    assert.match(third.output(), /left over from an earlier run/);
    assert.ok(!alive(temporalPid));
    const thirdChildren = descendants(third.proc.pid!);
    third.proc.kill('SIGINT');
    await waitFor(() => third.proc.exitCode !== null, 60_000, 'supervisor exit');
    for (const pid of thirdChildren) assert.ok(!alive(pid), `child ${pid} outlived the supervisor`);
  });

  it('refuses to start when a port is taken, naming the variable', async () => {
    const { createServer } = await import('node:net');
    const blocker = createServer().listen(Number(env.ESPRESSO_WEB_PORT), '127.0.0.1');
    await new Promise((r) => blocker.once('listening', r));
    try {
      const out = spawnSync(process.execPath, [cli, 'start'], {
        env: { ...env, ESPRESSO_TEMPORAL_EMBEDDED: 'false' },
        encoding: 'utf8',
        timeout: 30_000,
      });
      assert.equal(out.status, 1);
      assert.match(out.stderr, /port \d+ .* already in use.*ESPRESSO_WEB_PORT/);
    } finally {
      blocker.close();
    }
  });
});

/** A /proc file of a process ('' once it has exited). */
function procFile(pid: number, name: 'cmdline' | 'environ'): string {
  try {
    return readFileSync(`/proc/${pid}/${name}`, 'utf8');
  } catch {
    return '';
  }
}
