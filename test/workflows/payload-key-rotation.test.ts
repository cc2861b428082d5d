// Rotating the Temporal payload keys as docs/operations.md ("Encrypted payloads") says, with the real
// CLI against a real dev server (a namespace of its own) and a worker restarted at every step. The
// schedule starts out as a README backfill leaves it: waiting on BufferAll runs whose results, under
// the first key, it hands every later run. Two rotations later that key is gone, and the next daily
// run must still complete.
import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Client, defaultPayloadConverter } from '@temporalio/client';
import type { Payload } from '@temporalio/common';
import { msToTs } from '@temporalio/common/lib/time';
import {
  dataConverter,
  EncryptionCodec,
  loadPayloadKeys,
  payloadKeyId,
  PAYLOAD_KEYS_SECRET_ID,
  savePayloadKeys,
  type PayloadKeys,
} from '../../src/codec';
import { auditPage } from '../../src/audit/log';
import { withCurrentKey, withoutKey } from '../../src/codec/ring-edits';
import { loadConfig } from '../../src/config';
import { projectRoot } from '../../src/paths';
import { createStores } from '../../src/storage';
import { SCHEDULE_ID, TASK_QUEUE } from '../../src/temporal/constants';
import { registerSearchAttributes } from '../../src/temporal/search-attributes';
import { resolveTemporalCli } from '../../src/tools';
import type { DailySummary } from '../../src/workflows/daily-sync';
import { startEspresso, type Espresso } from '../support/espresso';
import { temporalEnv } from '../support/temporal';
import { tempDir } from '../support/tmp';

const cli = join(projectRoot, 'dist/src/cli/main.js');
const run = promisify(execFile);

describe('rotating the payload keys (docs/operations.md, "Encrypted payloads")', function () {
  this.timeout(300_000);
  let e: Espresso;
  let namespace: string;
  let cliEnv: NodeJS.ProcessEnv;
  let temporalCli: string;

  /** The `espresso` CLI as an operator runs it, the ring in the secret store (ESPRESSO_PAYLOAD_KEYS unset). */
  const espresso = async (args: string[], env: NodeJS.ProcessEnv = {}) => {
    try {
      const { stdout, stderr } = await run(process.execPath, [cli, ...args], {
        env: { ...cliEnv, ...env },
        timeout: 90_000,
      });
      return { code: 0, stdout, stderr };
    } catch (err) {
      const x = err as { code: number; stdout: string; stderr: string };
      return { code: x.code, stdout: x.stdout, stderr: x.stderr };
    }
  };
  const ok = async (...args: string[]) => {
    const out = await espresso(args);
    assert.equal(out.code, 0, `espresso ${args.join(' ')}: ${out.stdout}${out.stderr}`);
    return out.stdout;
  };
  const ring = () => loadPayloadKeys(undefined, e.stores.secrets);
  /** A worker restart: a new worker reads the ring as it is now. */
  const restart = async () => e.restartWorker(await ring());
  const client = async (keys?: PayloadKeys) =>
    new Client({
      connection: e.env.connection,
      namespace,
      dataConverter: dataConverter(keys ?? (await ring())),
    });

  const dailyRuns = async () => {
    const runs = new Map<string, string>();
    const c = await client();
    for await (const wf of c.workflow.list({ query: `WorkflowType = 'dailySyncWorkflow'` }))
      runs.set(wf.runId, wf.workflowId);
    return runs;
  };

  /** The run's summary once it ends; a workflow task failure (a payload it cannot decrypt) fails at once. */
  const summaryOf = async (workflowId: string): Promise<DailySummary> => {
    const keys = await ring();
    const c = await client(keys);
    const deadline = Date.now() + 120_000;
    for (;;) {
      const d = await c.workflow.getHandle(workflowId).describe();
      if (d.status.name !== 'RUNNING')
        return (await c.workflow.getHandle(workflowId).result()) as DailySummary;
      const history = await c.workflow.getHandle(workflowId).fetchHistory();
      const failed = history.events?.find((ev) => ev.workflowTaskFailedEventAttributes);
      const encoded = failed?.workflowTaskFailedEventAttributes?.failure?.encodedAttributes;
      if (encoded) {
        const [plain] = await new EncryptionCodec(keys).decode([encoded]);
        const { message } = defaultPayloadConverter.fromPayload<{ message: string }>(plain!);
        throw new Error(`${workflowId} fails its workflow task: ${message}`);
      }
      if (Date.now() > deadline) throw new Error(`${workflowId} did not end`);
      await new Promise((r) => setTimeout(r, 500));
    }
  };

  /** Starts a run as the daily calendar does: no overlap policy of its own, so the schedule's applies. */
  const startAsScheduled = async () => {
    const before = await dailyRuns();
    await e.env.connection.workflowService.patchSchedule({
      namespace,
      scheduleId: SCHEDULE_ID,
      patch: { triggerImmediately: {} },
      identity: 'payload-key-rotation test',
      requestId: randomUUID(),
    });
    for (const deadline = Date.now() + 30_000; Date.now() < deadline;) {
      const started = [...(await dailyRuns())].find(([runId]) => !before.has(runId));
      if (started) return started[1];
      await new Promise((r) => setTimeout(r, 300));
    }
    throw new Error('the schedule started no run');
  };

  before(async function () {
    const found = resolveTemporalCli();
    if (found.source === 'sdk-download') this.skip();
    temporalCli = found.path;
    const temporal = await temporalEnv();
    namespace = `keys-${randomBytes(4).toString('hex')}`;
    await temporal.connection.workflowService.registerNamespace({
      namespace,
      workflowExecutionRetentionPeriod: msToTs('1 day'),
    });
    await registerSearchAttributes(temporal.connection.operatorService, namespace);
    cliEnv = {
      ...process.env,
      ESPRESSO_DATA_DIR: await tempDir(),
      TEMPORAL_ADDRESS: temporal.address,
      TEMPORAL_NAMESPACE: namespace,
      ESPRESSO_SANDBOX_ENABLED: 'false',
      ESPRESSO_PAYLOAD_KEYS: '',
    };
    const stores = createStores(loadConfig(cliEnv).storage);
    // The worker's first start creates the ring with one key, as `npm start` does.
    const first = await loadPayloadKeys(undefined, stores.secrets, { create: true });
    e = await startEspresso({ taskQueue: TASK_QUEUE, namespace, stores, payloadKeys: first });
  });
  after(() => e?.stop());

  it('rotated twice (add, use, schedule apply, retire the old key), the next daily run completes', async () => {
    const early = await e.connect(40);
    await ok('schedule', 'apply');
    // README: `schedule apply` is recorded in the audit log, by whom and from where.
    const applied = (await auditPage(e.stores.blobs, { limit: 100 })).entries.filter(
      (a) => a.action === 'schedule-apply',
    );
    assert.deepEqual(
      applied.map((a) => [/^cli \S+$/.test(a.actor), a.address]),
      [[true, 'local']],
    );
    // As README "Runs, backfills and reruns" backfills: the schedule waits on these runs, so it keeps
    // the last one's result (under the first key) and hands it to each run it starts later.
    await run(temporalCli, [
      'schedule',
      'backfill',
      '--schedule-id',
      SCHEDULE_ID,
      '--start-time',
      '2026-11-01T00:00:00Z',
      '--end-time',
      '2026-11-03T00:00:00Z',
      '--overlap-policy',
      'BufferAll',
      '--address',
      e.env.address,
      '--namespace',
      namespace,
    ]);
    const backfilled = new Set<string>();
    for (const deadline = Date.now() + 120_000; backfilled.size < 2;) {
      for (const [, workflowId] of await dailyRuns()) backfilled.add(workflowId);
      if (Date.now() > deadline) throw new Error('the backfill did not start two runs');
      await new Promise((r) => setTimeout(r, 500));
    }
    for (const workflowId of backfilled) assert.equal((await summaryOf(workflowId)).outcomes.completed, 1);
    assert.equal(early.list.values.get(early.configuration.fieldName)!.filter(Boolean).length, 40);

    const rotate = async () => {
      const old = (await ring()).current;
      // 1. A new key at the end of the ring, then every process restarted: all can decrypt it.
      const added = /added payload key (\S+)/.exec(await ok('keys', 'add'))![1]!;
      assert.equal((await ring()).current, old);
      await restart();
      // 2. Made current (which re-encrypts the schedule), every process restarted, the schedule applied.
      assert.match(await ok('keys', 'use', added), new RegExp(`${added} is now the current payload key`));
      await restart();
      await ok('schedule', 'apply');
      // 3. The old key retired: closed histories written with it are still kept here, so only --force.
      const kept = await espresso(['keys', 'retire', old]);
      assert.equal(kept.code, 1, kept.stdout + kept.stderr);
      assert.match(kept.stdout, /closed workflow histories are still kept/);
      assert.doesNotMatch(kept.stdout, /schedule apply|open workflow run/);
      assert.match(await ok('keys', 'retire', old, '--force'), new RegExp(`retired payload key ${old}`));
      await restart();
      return { old, added };
    };
    const first = await rotate();
    const second = await rotate();
    const keys = await ring();
    assert.deepEqual([...keys.keys.keys()], [second.added]);
    assert.ok(!keys.keys.has(first.old) && !keys.keys.has(first.added));

    const late = await e.connect(30);
    const summary = await summaryOf(await startAsScheduled());
    assert.ok(summary.outcomes.completed! >= 2, JSON.stringify(summary.outcomes));
    assert.equal(late.list.values.get(late.configuration.fieldName)!.filter(Boolean).length, 30);
    const doctor = await espresso(['doctor']);
    assert.match(
      doctor.stdout,
      new RegExp(`ok +schedule: espresso-daily: everything it stores is under ${second.added}`),
    );
  });

  it('keys list names the ids, the current one and where the ring is, never a key', async () => {
    const out = await ok('keys', 'list');
    const keys = await ring();
    assert.match(out, /payload keys from secret payload-keys in local encrypted directory/);
    assert.match(out, new RegExp(`${keys.current} +current: encrypts new payloads`));
    const material = (await e.stores.secrets.get(PAYLOAD_KEYS_SECRET_ID))
      .split(',')
      .map((x) => x.split(':')[1]!);
    for (const key of material) assert.ok(!out.includes(key), 'keys list printed key material');
  });

  it('keys use, retire and add refuse an unknown id, the current key and a taken id', async () => {
    const keys = await ring();
    for (const args of [
      ['keys', 'use', 'no-such-key'],
      ['keys', 'retire', 'no-such-key'],
    ]) {
      const out = await espresso(args);
      assert.equal(out.code, 1, args.join(' '));
      assert.match(
        out.stderr,
        new RegExp(`no key of that id in the ring; its keys are ${keys.current} \\(current\\)`),
      );
      assert.ok(!out.stderr.includes('no-such-key'), 'the typed id is not echoed');
    }
    const current = await espresso(['keys', 'retire', keys.current]);
    assert.equal(current.code, 1);
    assert.match(
      current.stderr,
      new RegExp(`${keys.current} is the current key .*make another key current first`),
    );
    const taken = await espresso(['keys', 'add', '--id', keys.current]);
    assert.equal(taken.code, 1);
    assert.match(taken.stderr, new RegExp(`the ring has a key ${keys.current} already`));
    const bad = await espresso(['keys', 'add', '--id', 'not:an id']);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /a key id is 1-64 letters, digits and _.-/);
    assert.deepEqual(await ring(), keys, 'nothing changed');
  });

  it('keys retire keeps a key an open run or the schedule still needs, --force or not', async () => {
    const old = (await ring()).current;
    // A run started under the old key that stays open (no worker polls its task queue).
    const held = `held-open-${randomBytes(3).toString('hex')}`;
    await (
      await client()
    ).workflow.start('dailySyncWorkflow', {
      taskQueue: 'nobody-polls',
      workflowId: held,
      args: [{}],
    });
    const added = /added payload key (\S+)/.exec(await ok('keys', 'add', '--id', 'spare'))![1]!;
    await restart();
    await ok('keys', 'use', added);
    await restart();
    for (const force of [[], ['--force']]) {
      const out = await espresso(['keys', 'retire', old, ...force]);
      assert.equal(out.code, 1, out.stdout + out.stderr);
      assert.match(out.stdout, new RegExp(`1 open workflow run\\(s\\) started under ${old} \\(${held}\\)`));
    }
    await (await client()).workflow.getHandle(held).terminate('test');

    // A ring edited by hand, without `keys use`: the schedule is still under the key made old.
    await savePayloadKeys(e.stores.secrets, withCurrentKey(await ring(), old));
    await restart();
    const scheduled = await espresso(['keys', 'retire', added, '--force']);
    assert.equal(scheduled.code, 1);
    assert.match(scheduled.stdout, /the schedule's action input: run `npm run espresso -- schedule apply`/);
    assert.match(
      (await espresso(['doctor'])).stdout,
      new RegExp(
        `warn +schedule: espresso-daily holds the schedule's action input under ${added}, an older key`,
      ),
    );
    assert.match(
      await ok('schedule', 'apply'),
      /schedule espresso-daily recreated, so nothing in it is under an older key \(it held the schedule's action input under spare\)/,
    );
    assert.match(await ok('keys', 'retire', added, '--force'), /retired payload key spare/);
    await restart();
  });

  it('doctor fails while the schedule holds a key the ring lacks, naming it; schedule apply recreates it', async () => {
    const old = (await ring()).current;
    const added = /added payload key (\S+)/.exec(await ok('keys', 'add', '--id', 'lost'))![1]!;
    await restart();
    await ok('keys', 'use', added);
    await restart();
    // The schedule is under `lost`; a ring edited by hand drops `lost` without retiring it.
    await savePayloadKeys(e.stores.secrets, withoutKey(withCurrentKey(await ring(), old), added));
    await restart();
    const failing = await espresso(['doctor']);
    assert.equal(failing.code, 1);
    assert.match(
      failing.stdout,
      /FAIL +schedule: espresso-daily cannot be decoded with the payload keys: it holds the schedule's action input under lost, which the ring \(\S+ \(current\)\) lacks/,
    );
    // Recreated from scratch, the schedule needs no key to be read first.
    assert.match(await ok('schedule', 'apply'), /recreated/);
    assert.match(
      (await espresso(['doctor'])).stdout,
      new RegExp(`ok +schedule: espresso-daily: everything it stores is under ${old}`),
    );
  });

  it('rotated while a run is in flight (add, use, schedule apply): the run completes and every history stays readable', async () => {
    const since = new Date().toISOString();
    const slow = await e.connect(1_200);
    // Every request of this account is answered 429 until the rotation is done: its run stays in
    // flight, retrying, while the keys change under it.
    slow.account.settings.faults.rateLimitRate = 1;
    const old = (await ring()).current;
    await ok('schedule', 'apply');
    const daily = await startAsScheduled();
    const c = await client();
    const own = `WorkflowId STARTS_WITH 'sync/${slow.configuration.id}/'`;
    let runId: string | undefined;
    for (const deadline = Date.now() + 30_000; !runId;) {
      for await (const wf of c.workflow.list({ query: own })) runId = wf.workflowId;
      if (Date.now() > deadline) throw new Error('the configuration run did not start');
      await new Promise((r) => setTimeout(r, 300));
    }

    const added = /added payload key (\S+)/.exec(await ok('keys', 'add'))![1]!;
    await restart();
    await ok('keys', 'use', added);
    await restart();
    await ok('schedule', 'apply');
    const held = await c.workflow.getHandle(runId).describe();
    assert.equal(held.status.name, 'RUNNING', 'the rotation happened while the run was in flight');
    slow.account.settings.faults.rateLimitRate = 0;

    const summary = await summaryOf(daily);
    assert.equal(summary.outcomes.failed ?? 0, 0, JSON.stringify(summary.outcomes));
    assert.equal(slow.list.values.get(slow.configuration.fieldName)!.filter(Boolean).length, 1_200);

    // Every history of the runs this test started, old and new events alike, decodes with the ring;
    // the configuration run's history holds payloads under both keys.
    const keys = await ring();
    const codec = new EncryptionCodec(keys);
    const decoded: string[] = [];
    for await (const wf of c.workflow.list({ query: `StartTime >= '${since}'` })) {
      const history = await c.workflow.getHandle(wf.workflowId, wf.runId).fetchHistory();
      const encrypted = payloadsIn(history).filter((p) => payloadKeyId(p) !== undefined);
      await assert.doesNotReject(codec.decode(encrypted), `${wf.workflowId} decodes`);
      if (wf.workflowId === runId)
        assert.deepEqual(new Set(encrypted.map(payloadKeyId)), new Set([old, added]), wf.workflowId);
      decoded.push(wf.workflowId);
    }
    assert.ok(decoded.includes(daily) && decoded.includes(runId), decoded.join(', '));
    // The old key still decodes those histories: retiring it is refused while they are kept.
    const kept = await espresso(['keys', 'retire', old]);
    assert.equal(kept.code, 1, kept.stdout + kept.stderr);
    assert.match(kept.stdout, /closed workflow histories are still kept/);
  });

  it('with ESPRESSO_PAYLOAD_KEYS, the commands say what to change there and edit nothing', async () => {
    const keys = await ring();
    const envRing = `envkey:${randomBytes(32).toString('base64')}`;
    const env = { ESPRESSO_PAYLOAD_KEYS: envRing };
    const list = await espresso(['keys', 'list'], env);
    assert.equal(list.code, 0);
    assert.match(list.stdout, /payload keys from ESPRESSO_PAYLOAD_KEYS:\n {2}envkey +current/);
    const add = await espresso(['keys', 'add'], env);
    assert.equal(add.code, 1);
    assert.match(add.stderr, /append `,<new id>:<key>` to ESPRESSO_PAYLOAD_KEYS/);
    const use = await espresso(['keys', 'use', 'envkey'], env);
    assert.equal(use.code, 1);
    assert.match(use.stderr, /move envkey's entry first in ESPRESSO_PAYLOAD_KEYS/);
    for (const out of [list, add, use])
      assert.ok(!(out.stdout + out.stderr).includes(envRing.split(':')[1]!));
    assert.deepEqual(await ring(), keys, 'the secret store ring is untouched');
  });
});

/** Every payload a history holds, wherever in its events (inputs, results, failures, memos). */
function payloadsIn(value: unknown, found: Payload[] = []): Payload[] {
  if (!value || typeof value !== 'object' || ArrayBuffer.isView(value)) return found;
  if ('metadata' in value && 'data' in value) {
    found.push(value as Payload);
    return found;
  }
  for (const child of Object.values(value)) payloadsIn(child, found);
  return found;
}
