// `npm run chaos [-- --json] [--contacts N] [--kills N] [--server-restarts N] [--overlap]
//   [--oauth] [--workers N] [--token-lifetime S] [--kill-during-export] [--configurations N]
//   [--cluster [--database-restarts N]]`
// A full run against a Sandbox that fails on purpose (5% 5xx, 5% 429, 1% timeouts, 0.5% rejected
// rows) while the worker is SIGKILLed and the Temporal dev server restarted; then checks that nothing
// was lost and no contact was ever written two values. Exits non-zero otherwise. With --overlap the
// same configuration is also started again through every entry point while it runs. With --oauth
// the configuration is connected through the Sandbox's OAuth consent, its access tokens expire every
// --token-lifetime seconds, and --workers worker processes refresh them (one of them is killed each
// time): no refresh token may be presented twice and the configuration must never need reauth.
// With --kill-during-export the first worker kill lands while the export still lists and chunk
// updates already write beside it (more than 10,000 contacts, so there are two chunks or more).
// With --configurations N, N configurations of one ESP account (each its own list of --contacts
// contacts) start together: one run writes to the account at a time, the next waits as its guest
// (maintains and lists on what the writing run lends it) and writes once the account is its own;
// each list is checked alike.
// With --cluster it runs on the production topology (`espresso cluster`: the Temporal server on
// PostgreSQL, moto, 3 workers by default), whose supervisor restarts what is killed, and PostgreSQL
// is restarted too.
import { setTimeout as sleep } from 'node:timers/promises';
import { Command } from 'commander';
import { count } from './args';
import { tsToMs } from '@temporalio/common/lib/time';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import type { RunSummary } from '../src/runs/summaries';
import { runFiles, type ResultLine } from '../src/runs/files';
import { sandboxAdmin } from '../src/sandbox/admin';
import { TASK_QUEUE } from '../src/temporal/constants';
import { accountWantedSignal } from '../src/workflows/configuration-run';
import { ENTRY_POINTS, startAgain, type EntryPoint } from './overlap';
import { benchDeps, prepare, sandboxJson } from './scenarios';
import { ACCOUNTS, startStack } from './stack';

const options = new Command()
  .option('--json', 'print one JSON object on stdout (progress goes to stderr)')
  .option('--contacts <n>', 'contacts', count, 100_000)
  .option('--kills <n>', 'worker SIGKILLs during the run', count, 3)
  .option('--server-restarts <n>', 'Temporal dev server restarts during the run', count, 1)
  .option('--overlap', 'start the configuration again through each entry point while it runs')
  .option('--oauth', 'connect with OAuth (the Sandbox rotates refresh tokens and detects reuse)')
  .option('--workers <n>', 'worker processes (default 1, with --cluster 3)', count)
  .option('--token-lifetime <s>', 'with --oauth: seconds an access token lives', count, 3_600)
  .option(
    '--kill-during-export',
    'the first disruption is a kill while the export and chunk updates both run',
  )
  .option(
    '--configurations <n>',
    'configurations of the same ESP account, each its own list of --contacts contacts, started together',
    count,
    1,
  )
  .option('--cluster', 'run on the production topology (`espresso cluster`) instead of the dev server')
  .option('--database-restarts <n>', 'with --cluster: PostgreSQL restarts during the run (default 1)', count)
  .parse()
  .opts<{
    json?: boolean;
    contacts: number;
    kills: number;
    serverRestarts: number;
    overlap?: boolean;
    oauth?: boolean;
    workers?: number;
    tokenLifetime: number;
    killDuringExport?: boolean;
    configurations: number;
    cluster?: boolean;
    databaseRestarts?: number;
  }>();
if (options.databaseRestarts !== undefined && !options.cluster) {
  console.error('[chaos] --database-restarts needs --cluster (the dev server has no database server)');
  process.exit(2);
}
const workerCount = Math.max(1, options.workers ?? (options.cluster ? 3 : 1));
const databaseRestarts = options.cluster ? (options.databaseRestarts ?? 1) : 0;

const say = (msg: string) => (options.json ? process.stderr : process.stdout).write(`[chaos] ${msg}\n`);
const PACING = { rps: 100_000, concurrency: 8 };
const FAULTS = { errorRate: 0.05, rateLimitRate: 0.05, timeoutRate: 0.01, rowRejectRate: 0.005 };
/** With --overlap: contacts an earlier run writes first (the run a redispatch names). */
const EARLIER_CONTACTS = 1_000;

async function main(): Promise<void> {
  // Signals stop the bench stack (bench/stack.ts), not only the SDK's workers.
  Runtime.install({ logger: new DefaultLogger('ERROR'), shutdownSignals: [] });
  // Timed-out requests are abandoned after 2 s (production: 30 s), to keep the run short.
  const stack = await startStack({
    espTimeoutMs: 2_000,
    serverDbFile: true,
    ...(options.cluster ? { cluster: { workers: workerCount, pacing: PACING } } : {}),
  });
  let exitCode = 0;
  const account = `/accounts/${ACCOUNTS.open.id}`;
  const patchAccount = (settings: object) =>
    sandboxAdmin(stack.sandbox, `${account}/settings`, {
      method: 'PATCH',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(settings),
    });
  const oauthCounts = () =>
    sandboxJson<{ refreshes: number; refreshTokenReuses: number }>(stack, `${account}/oauth`);
  try {
    const deps = benchDeps(stack, PACING);
    // With --overlap, an earlier run (of the first contacts) gives redispatch something to name.
    const early = options.overlap ? EARLIER_CONTACTS : 0;
    if (options.oauth) await patchAccount({ tokenLifetimeSeconds: Math.max(1, options.tokenLifetime) });
    const { configuration, listId } = await prepare(stack, deps, ACCOUNTS.open, early || options.contacts, {
      oauth: options.oauth,
    });
    // The account's other configurations, each its own list: their runs wait for the first's.
    const others: Array<Awaited<ReturnType<typeof prepare>>> = [];
    for (let i = 1; i < options.configurations; i++)
      others.push(await prepare(stack, deps, ACCOUNTS.open, options.contacts, { oauth: options.oauth }));
    const workers = [];
    for (let i = 0; i < workerCount; i++) workers.push(await stack.startWorker(PACING));
    const oauthBefore = await oauthCounts();
    const earlierRun = '2025-12-31';
    if (early) {
      const earlier = (await stack.env.client.workflow.execute('configurationSyncWorkflow', {
        taskQueue: TASK_QUEUE,
        workflowId: `${chaosId(listId)}/earlier`,
        args: [{ configurationId: configuration.id, runDate: earlierRun, mode: 'full' }],
      })) as { status: string; updated: number };
      if (earlier.updated !== early) throw new Error(`the earlier run ended ${earlier.status}`);
      await sandboxAdmin(stack.sandbox, `${account}/lists/${listId}/seed`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ contacts: options.contacts - early }),
      });
    }
    // The disruptions, in random order, at random moments while the run goes on. The starts
    // through other entry points come right after the first kill: the killed worker's activities
    // hold the account until their heartbeat timeout, so the run is surely still going (and its
    // lock held by activities no worker runs, the hardest case for the one-writer rule).
    type Disruption = 'kill' | 'restart' | 'database';
    const disruptions: Disruption[] = [
      ...Array<Disruption>(options.kills).fill('kill'),
      ...Array<Disruption>(options.serverRestarts).fill('restart'),
      ...Array<Disruption>(databaseRestarts).fill('database'),
    ].sort(() => Math.random() - 0.5);
    if (options.killDuringExport && options.kills > 0) disruptions.sort((a) => (a === 'kill' ? -1 : 1));
    const firstKill = Math.max(0, disruptions.indexOf('kill')) + (options.kills > 0 ? 1 : 0);
    const actions: Array<Disruption | EntryPoint> = [
      ...disruptions.slice(0, firstKill),
      ...(options.overlap ? ENTRY_POINTS : []),
      ...disruptions.slice(firstKill),
    ];
    // The ESP answers slowly from the run's start until the last disruption has hit, so each lands
    // mid-run: a 10,000-contact run at no latency can end between two polls of its progress (it
    // did in 1.5 s on CI, before the first kill). --kill-during-export: the listing is slowed less
    // at first, so the export is still going when chunks write.
    const slowed = actions.length > 0;
    const slowMs = 1_500;
    const startLatencyMs = options.killDuringExport ? 150 : slowed ? slowMs : 0;
    await patchAccount({ faults: { ...FAULTS, latencyMs: startLatencyMs } });
    const runDate = '2026-01-01';
    const workflowId = chaosId(listId);
    const runs = [{ configuration, listId }, ...others];
    const started = performance.now();
    for (const run of runs) {
      await stack.env.client.workflow.start('configurationSyncWorkflow', {
        taskQueue: TASK_QUEUE,
        workflowId: chaosId(run.listId),
        args: [{ configurationId: run.configuration.id, runDate, mode: 'full' }],
      });
    }
    say(
      `${runs.length === 1 ? `run ${workflowId}` : `${runs.length} runs on one account`}: ${options.contacts} contacts${runs.length === 1 ? '' : ' each'}, faults ${JSON.stringify(FAULTS)}`,
    );
    const overlaps: Array<{ entry: EntryPoint; heldOff: boolean; how: string }> = [];
    let workerKills = 0;
    let killsWhileExporting = 0;
    let serverRestarts = 0;
    let databaseRestartsDone = 0;
    /** RUNNING (or UNREACHABLE) while any run goes on; then the first that did not complete, if any. */
    const status = async () => {
      const all = await Promise.all(
        runs.map((run) =>
          stack.env.client.workflow
            .getHandle(chaosId(run.listId))
            .describe()
            .then((d) => d.status.name as string)
            .catch(() => 'UNREACHABLE'),
        ),
      );
      return (
        all.find((st) => st === 'RUNNING' || st === 'UNREACHABLE') ??
        all.find((st) => st !== 'COMPLETED') ??
        'COMPLETED'
      );
    };
    // The first disruption hits while contacts are being exported or written; after a kill the run
    // waits out the 20 s heartbeat timeout, so the later ones find it still running.
    const handle = stack.env.client.workflow.getHandle(workflowId);
    type Progress = { phase: string; exporting?: boolean };
    const progress = () => handle.query<Progress>('progress').catch((): Progress => ({ phase: '' }));
    const hitNow = (p: Progress) =>
      options.killDuringExport
        ? p.phase === 'dispatch' && !!p.exporting
        : ['export', 'dispatch'].includes(p.phase);
    for (let p: Progress = { phase: '' }; !hitNow(p); await sleep(50)) {
      p = await progress();
      if (!['RUNNING', 'UNREACHABLE'].includes(await status())) break;
    }
    // Slow until the last disruption (a PostgreSQL restart leaves the activities writing, and a fast
    // ESP let the run end before the kill after it).
    if (slowed && startLatencyMs !== slowMs) await patchAccount({ faults: { ...FAULTS, latencyMs: slowMs } });
    for (const [i, action] of actions.entries()) {
      const overlapStart = action !== 'kill' && action !== 'restart' && action !== 'database';
      await sleep(i === 0 ? Math.random() * 300 : overlapStart ? 200 : 1_000 + Math.random() * 3_000);
      if (!['RUNNING', 'UNREACHABLE'].includes(await status())) break;
      if (action === 'kill') {
        const victim = Math.floor(Math.random() * workers.length);
        const before = await progress();
        await workers[victim]!.kill();
        workerKills++;
        if (before.phase === 'dispatch' && before.exporting) killsWhileExporting++;
        say(`worker ${victim + 1} of ${workers.length} SIGKILLed (${workerKills})`);
        workers[victim] = await stack.startWorker(PACING);
      } else if (overlapStart) {
        const started = await startAgain(stack, deps, action, configuration.id, runDate, earlierRun);
        overlaps.push(started);
        say(
          `started again through ${action}: ${started.heldOff ? 'held off' : 'NOT HELD OFF'} (${started.how})`,
        );
      } else if (action === 'database') {
        await stack.restartDatabase();
        databaseRestartsDone++;
        say('PostgreSQL restarted (same data folder)');
      } else {
        await stack.restartTemporal();
        serverRestarts++;
        say(`Temporal ${options.cluster ? 'server' : 'dev server'} restarted (same database)`);
      }
    }
    if (slowed) await patchAccount({ faults: { ...FAULTS, latencyMs: 0 } });
    const deadline = Date.now() + 20 * 60_000;
    let final = await status();
    while (['RUNNING', 'UNREACHABLE'].includes(final) && Date.now() < deadline) {
      await sleep(500);
      final = await status();
    }
    const seconds = (performance.now() - started) / 1000;
    for (const w of workers) await w.stop();
    if (final !== 'COMPLETED') throw new Error(`the run ended ${final}`);

    // Each list: what the chunk files promised, what the results files say, what the ESP holds.
    const checks: Array<Awaited<ReturnType<typeof checkList>>> = [];
    for (const [i, run] of runs.entries()) {
      const earlier = i === 0 && early ? earlierRun : undefined;
      checks.push(await checkList(stack, deps, account, run, runDate, earlier, options.contacts));
    }
    const sum = (f: (c: (typeof checks)[number]) => number) => checks.reduce((n, c) => n + f(c), 0);
    const updated = sum((c) => c.updated);
    const lost = sum((c) => c.lost);
    const conflictingWrites = sum((c) => c.conflictingWrites);
    const contactWrites = sum((c) => c.contactWrites);
    const rejected = sum((c) => c.rejected);
    const countsAddUp = checks.every((c) => c.countsAddUp);
    // Runs that asked the run writing to the account for it, and of those, runs that began their
    // export (maintenance, the listing) while that run still ran: as its guest, on what it lent.
    const timing: Array<{ exportAt: number; closedAt: number }> = [];
    let waitedForAccount = 0;
    for (const run of runs) {
      const events =
        (await stack.env.client.workflow.getHandle(chaosId(run.listId)).fetchHistory()).events ?? [];
      const at = (e: (typeof events)[number]) => tsToMs(e.eventTime ?? undefined);
      const wanted = accountWantedSignal.name;
      if (
        events.some((e) => e.signalExternalWorkflowExecutionInitiatedEventAttributes?.signalName === wanted)
      )
        waitedForAccount++;
      const exported = events.find(
        (e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'exportPart',
      );
      timing.push({ exportAt: exported ? at(exported) : Infinity, closedAt: at(events.at(-1)!) });
    }
    timing.sort((a, b) => a.exportAt - b.exportAt);
    const listedAsGuest = timing.filter((t, i) => i > 0 && t.exportAt < timing[i - 1]!.closedAt).length;
    const oauthAfter = await oauthCounts();
    const stored = await Promise.all(runs.map((run) => deps.stores.configurations.get(run.configuration.id)));
    const report = {
      contacts: options.contacts,
      ...(runs.length > 1 ? { configurations: runs.length, waitedForAccount, listedAsGuest } : {}),
      workers: workers.length,
      updated,
      rejected,
      lost,
      conflictingWrites,
      contactWrites,
      workerKills,
      ...(options.killDuringExport ? { killsWhileExporting } : {}),
      serverRestarts,
      ...(options.cluster ? { databaseRestarts: databaseRestartsDone } : {}),
      ...(options.overlap
        ? { overlapStarts: overlaps.length, overlapsHeldOff: overlaps.filter((o) => o.heldOff).length }
        : {}),
      ...(options.oauth
        ? {
            tokenRefreshes: oauthAfter.refreshes - oauthBefore.refreshes,
            refreshTokenReuses: oauthAfter.refreshTokenReuses - oauthBefore.refreshTokenReuses,
            // Configurations sent to needs_reauth (stored so, or their run ended so).
            needsReauth: runs.filter(
              (_, i) => stored[i]!.status === 'needs_reauth' || checks[i]!.summary.status === 'needs_reauth',
            ).length,
          }
        : {}),
      seconds: Math.round(seconds * 10) / 10,
      summaryCountsAddUp: countsAddUp,
    };
    if (options.json) console.log(JSON.stringify(report));
    else for (const [k, v] of Object.entries(report)) console.log(`${k.padEnd(20)} ${v}`);
    if (lost > 0 || conflictingWrites > 0 || !countsAddUp) {
      say('FAILED: something was lost, written twice, or the summary does not add up');
      exitCode = 1;
    }
    if (options.oauth && (report.refreshTokenReuses !== 0 || report.needsReauth !== 0)) {
      say(
        'FAILED: a rotated refresh token was presented again, or the configuration was sent to needs_reauth',
      );
      exitCode = 1;
    }
    if (overlaps.some((o) => !o.heldOff) || (options.overlap && overlaps.length < ENTRY_POINTS.length)) {
      say(`FAILED: a start through another entry point was not held off, or not every entry point was tried`);
      exitCode = 1;
    }
    if (runs.length > 1 && (waitedForAccount < runs.length - 1 || listedAsGuest < runs.length - 1)) {
      say(
        `FAILED: of the account's ${runs.length - 1} runs that could not write at once, ${waitedForAccount} waited for it and ${listedAsGuest} listed as the writing run's guest`,
      );
      exitCode = 1;
    }
    if (options.killDuringExport && killsWhileExporting === 0) {
      say('FAILED: no kill landed while the export and chunk updates both ran');
      exitCode = 1;
    }
    if (
      workerKills < options.kills ||
      serverRestarts < options.serverRestarts ||
      databaseRestartsDone < databaseRestarts
    ) {
      say(
        `FAILED: the run ended before every disruption happened (${workerKills} kills, ${serverRestarts} restarts, ${databaseRestartsDone} database restarts)`,
      );
      exitCode = 1;
    }
  } finally {
    await stack.stop();
  }
  process.exit(exitCode);
}

/**
 * One configuration's list after its run (`earlierRun`: the folder of an earlier run of it, whose
 * contacts it wrote first): contacts holding their chunk value, rejected with a reason, neither
 * (lost), holding more than one value in their history (conflicting), the values the Sandbox was
 * sent in all, and whether the run's summary counts the same. `contacts`: the list's size.
 */
async function checkList(
  stack: Awaited<ReturnType<typeof startStack>>,
  deps: ReturnType<typeof benchDeps>,
  account: string,
  { configuration, listId }: Awaited<ReturnType<typeof prepare>>,
  runDate: string,
  earlierRun: string | undefined,
  contacts: number,
) {
  const expected = new Map<string, string>();
  const rejected = new Map<string, string>();
  const earlierValues = new Map<string, string>();
  if (earlierRun) {
    for (const key of await deps.stores.blobs.list(runFiles.prefix(configuration.id, earlierRun))) {
      if (!/contacts-\d+\.jsonl$/.test(key)) continue;
      for await (const line of deps.stores.blobs.readLines(key)) {
        const { contactId, value } = JSON.parse(line) as { contactId: string; value: string };
        earlierValues.set(contactId, value);
      }
    }
  }
  for (const key of await deps.stores.blobs.list(runFiles.prefix(configuration.id, runDate))) {
    if (/contacts-\d+\.jsonl$/.test(key)) {
      for await (const line of deps.stores.blobs.readLines(key)) {
        const { contactId, value } = JSON.parse(line) as { contactId: string; value: string };
        expected.set(contactId, value);
      }
    } else if (/results-\d+\.jsonl$/.test(key)) {
      for await (const line of deps.stores.blobs.readLines(key)) {
        const r = JSON.parse(line) as ResultLine;
        if (r.status === 'rejected' && r.contactId && r.reason) rejected.set(r.contactId, r.reason);
      }
    }
  }
  const history = await (
    await sandboxAdmin(stack.sandbox, `${account}/lists/${listId}/history?field=lcee`)
  ).text();
  const current = new Map<string, string | null>();
  let conflictingWrites = 0;
  for (const line of history.split('\n')) {
    if (!line) continue;
    const h = JSON.parse(line) as { contactId: string; current: string | null; values: string[] };
    current.set(h.contactId, h.current);
    if (h.values.length > 1) conflictingWrites++;
  }
  // Every contact value the Sandbox was sent: one sent again after a failed request counts again.
  const { writes: contactWrites } = await sandboxJson<{ writes: number }>(
    stack,
    `${account}/lists/${listId}/summary?field=lcee`,
  );
  let updated = 0;
  let lost = 0;
  for (const [contactId, value] of expected) {
    if (current.get(contactId) === value) updated++;
    else if (!rejected.has(contactId)) lost++;
  }
  for (const [contactId, value] of earlierValues) if (current.get(contactId) !== value) lost++;
  lost += contacts - expected.size - earlierValues.size; // contacts that never reached a chunk file
  const summary = JSON.parse(
    (await deps.stores.blobs.get(runFiles.summary(configuration.id, runDate))).body.toString('utf8'),
  ) as RunSummary;
  const countsAddUp =
    summary.contacts.updated === updated &&
    summary.contacts.rejected === rejected.size &&
    summary.contacts.updated + summary.contacts.rejected === summary.contacts.exported;
  return { updated, rejected: rejected.size, lost, conflictingWrites, contactWrites, countsAddUp, summary };
}

/** The workflow id of the chaos run of a configuration, by its list. */
function chaosId(listId: string): string {
  return `chaos/${listId}`;
}

main().catch((err) => {
  console.error(`[chaos] FAILED: ${(err as Error).message}`);
  process.exit(1);
});
