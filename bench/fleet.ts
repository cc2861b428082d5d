// `npm run bench -- --fleet`: espresso as a fleet sees it. Several worker processes against one
// rate-limited ESP account (and two configurations on it), then one daily run over N configurations
// on their own accounts, with one and with two workers, and with one very large list among them.
// See docs/scale.md for what each figure means and what moved it. With `cluster`, each scenario runs
// on the production topology (`espresso cluster`, bench/cluster.ts) with that many workers.
import { randomBytes } from 'node:crypto';
import { tsToMs } from '@temporalio/common/lib/time';
import { setTimeout as sleep } from 'node:timers/promises';
import { saveConnection } from '../src/connect';
import { runFiles } from '../src/runs/files';
import { sandboxAdmin } from '../src/sandbox/admin';
import { TASK_QUEUE } from '../src/temporal/constants';
import type { DailySummary } from '../src/workflows/daily-sync';
import { benchDeps, prepare, sandboxJson } from './scenarios';
import { ACCOUNTS, startStack, type SandboxAccountConfig, type Stack, type Topology } from './stack';

type Say = (msg: string) => void;
const RUN_DATE = '2026-01-01';

interface AccountStats {
  requests: number;
  byStatus: Record<string, number>;
  firstAt: number;
  lastAt: number;
}

export interface PacingFigures {
  workers: number;
  configurations: number;
  contacts: number;
  requests: number;
  share429: number;
  acceptedPerSecond: number;
  limitRps: number;
  /**
   * Where the account waited (from the Sandbox's timeline of its requests): requests per half
   * second from its first, all and listing pages alone, and the longest pause between two requests.
   */
  timeline: { perHalfSecond: number[]; listingPerHalfSecond: number[]; largestGapMs: number };
}

export interface FleetRunFigures {
  configurations: number;
  workers: number;
  concurrency: number | 'default';
  seconds: number;
  configurationsPerSecond: number;
  contactsVerified: number;
  maxWorkflowEvents: number;
  eventsPerConfiguration: number;
  peakWorkerRssMb: number;
  /** History events per configuration, by workflow type. */
  eventsPerConfigurationByWorkflow: Record<string, number>;
  /** A configuration run's phases, on average (from the run summaries). */
  meanRunSeconds: { maintenance: number; export: number; dispatch: number; total: number };
  /**
   * On average, from the daily run asking the server to start a configuration run (its history's
   * start-child event) to the run's start: the server's part of the fan-out, outside any run.
   */
  meanChildStartMs: number;
}

/**
 * W worker processes, `configurations` lists on the one limited account (50 requests/s, 10 at
 * once), `contacts` in all, every run started at once. Accepted requests/s over the account's
 * first to last request.
 */
export async function pacing(
  say: Say,
  workers: number,
  configurations: number,
  contacts: number,
  { cluster, serverDbFile }: Topology = {},
): Promise<PacingFigures> {
  const limit = { rps: ACCOUNTS.limited.requestsPerSecond, concurrency: ACCOUNTS.limited.concurrency };
  const stack = await startStack({
    serverDbFile,
    ...(cluster ? { cluster: { workers, pacing: limit } } : {}),
  });
  try {
    const deps = benchDeps(stack, limit);
    const prepared = [];
    for (let i = 0; i < configurations; i++) {
      prepared.push(await prepare(stack, deps, ACCOUNTS.limited, Math.round(contacts / configurations)));
    }
    const procs = [];
    for (let i = 0; i < workers; i++) procs.push(await stack.startWorker(limit));
    await sandboxAdmin(stack.sandbox, '/stats/reset', { method: 'POST' });
    say(
      `pacing: ${workers} worker(s), ${configurations} configuration(s) on one account, ${contacts} contacts`,
    );
    const results = await Promise.all(
      prepared.map(
        ({ configuration, listId }) =>
          stack.env.client.workflow.execute('configurationSyncWorkflow', {
            taskQueue: TASK_QUEUE,
            workflowId: `bench/pacing/${listId}`,
            args: [{ configurationId: configuration.id, runDate: RUN_DATE, mode: 'full' }],
          }) as Promise<{ status: string; updated: number }>,
      ),
    );
    for (const p of procs) await p.stop();
    const updated = results.reduce((n, r) => n + r.updated, 0);
    if (
      results.some((r) => r.status !== 'completed') ||
      updated !== Math.round(contacts / configurations) * configurations
    ) {
      throw new Error(`pacing runs ended ${results.map((r) => `${r.status} ${r.updated}`).join(', ')}`);
    }
    const stats = (await sandboxJson<Record<string, AccountStats>>(stack, '/stats'))[ACCOUNTS.limited.id]!;
    const rejected = stats.byStatus['429'] ?? 0;
    const timeline = await sandboxJson<{ at: number[]; kind: string[] }>(
      stack,
      `/stats/${ACCOUNTS.limited.id}/timeline`,
    );
    return {
      workers,
      configurations,
      contacts,
      requests: stats.requests,
      share429: round(rejected / Math.max(1, stats.requests), 4),
      acceptedPerSecond: round((stats.requests - rejected) / ((stats.lastAt - stats.firstAt) / 1000)),
      limitRps: limit.rps,
      timeline: halfSeconds(timeline),
    };
  } finally {
    await stack.stop();
  }
}

/** A timeline of requests (ms after the first) as requests per half second, and its longest pause. */
function halfSeconds({ at, kind }: { at: number[]; kind: string[] }): PacingFigures['timeline'] {
  const bins = Math.floor((at[at.length - 1] ?? 0) / 500) + 1;
  const perHalfSecond = new Array<number>(bins).fill(0);
  const listingPerHalfSecond = new Array<number>(bins).fill(0);
  let largestGapMs = 0;
  at.forEach((t, i) => {
    perHalfSecond[Math.floor(t / 500)]!++;
    if (kind[i] === 'listing') listingPerHalfSecond[Math.floor(t / 500)]!++;
    if (i > 0) largestGapMs = Math.max(largestGapMs, t - at[i - 1]!);
  });
  return { perHalfSecond, listingPerHalfSecond, largestGapMs };
}

/**
 * One daily run over `size` configurations, each on its own Sandbox account (20 requests/s, 4 at
 * once, 30 ms per request, 2,000 contacts), plus optionally one `large` configuration; every
 * contact is then checked against its chunk file.
 */
export async function fleetRun(
  say: Say,
  options: { size: number; workers: number; concurrency?: number; large?: number } & Topology,
): Promise<FleetRunFigures & { smallSeconds: number; largeSeconds?: number }> {
  const SMALL = 2_000;
  const limits = { requestsPerSecond: 20, concurrency: 4 };
  const accounts: SandboxAccountConfig[] = Array.from({ length: options.size }, (_, i) => ({
    id: `fleet_${String(i).padStart(6, '0')}`,
    name: `Fleet ${i}`,
    apiKeys: [`fleet-key-${String(i).padStart(6, '0')}`],
    lists: [{ id: 'list_main', name: 'Newsletter', contacts: SMALL }],
    settings: { limits, faults: { latencyMs: 30 } },
  }));
  if (options.large) {
    accounts.push({
      id: 'fleet_large',
      name: 'Fleet (large)',
      apiKeys: ['fleet-key-large0'],
      lists: [{ id: 'list_main', name: 'Newsletter', contacts: options.large }],
      settings: { limits, faults: { latencyMs: 30 } },
    });
  }
  const pacing = { rps: limits.requestsPerSecond, concurrency: limits.concurrency };
  const stack = await startStack({
    accounts,
    serverDbFile: options.serverDbFile,
    ...(options.cluster ? { cluster: { workers: options.workers, pacing } } : {}),
  });
  try {
    const deps = benchDeps(stack, pacing);
    say(`fleet: connecting ${accounts.length} configurations`);
    const configured = [];
    for (const account of accounts) {
      const { credentials, account: info } = await deps.processor.connectWithApiKey(account.apiKeys[0]!);
      const { configuration } = await saveConnection(deps, {
        esp: 'sandbox',
        credentials,
        account: info,
        listId: 'list_main',
      });
      configured.push({ configuration, account, contacts: account.lists[0]!.contacts });
    }
    const procs = [];
    for (let i = 0; i < options.workers; i++) procs.push(await stack.startWorker(pacing));
    say(
      `fleet: one daily run over ${accounts.length} configurations, ${options.workers} worker(s), concurrency ${options.concurrency ?? 'default'}`,
    );
    const workflowId = `bench/daily/${randomBytes(3).toString('hex')}`;
    const started = performance.now();
    const summary = (await stack.env.client.workflow.execute('dailySyncWorkflow', {
      taskQueue: TASK_QUEUE,
      workflowId,
      args: [{ runDate: RUN_DATE, ...(options.concurrency ? { concurrency: options.concurrency } : {}) }],
    })) as DailySummary;
    const seconds = (performance.now() - started) / 1000;
    const peaks = [];
    for (const p of procs) peaks.push(await p.stop());
    if ((summary.outcomes.completed ?? 0) !== accounts.length) {
      throw new Error(`the daily run ended with ${JSON.stringify(summary.outcomes)}`);
    }
    say('fleet: checking every contact against its chunk file');
    let verified = 0;
    const phases = { maintenance: 0, export: 0, dispatch: 0, total: 0 };
    for (const { configuration, account, contacts } of configured) {
      verified += await verify(stack, deps.stores, configuration.id, account.id, contacts);
      const s = JSON.parse(
        (await deps.stores.blobs.get(runFiles.summary(configuration.id, RUN_DATE))).body.toString('utf8'),
      ) as { durationsMs: typeof phases };
      for (const k of Object.keys(phases) as Array<keyof typeof phases>) phases[k] += s.durationsMs[k] / 1000;
    }
    for (const k of Object.keys(phases) as Array<keyof typeof phases>)
      phases[k] = round(phases[k] / configured.length);
    const { maxEvents, dailyEvents, closeTimes, byType, meanChildStartMs } = await histories(
      stack,
      workflowId,
    );
    const smallClose = Math.max(
      ...configured
        .filter((c) => c.account.id !== 'fleet_large')
        .map((c) => closeTimes.get(c.configuration.id) ?? 0),
    );
    const largeId = configured.find((c) => c.account.id === 'fleet_large')?.configuration.id;
    const startedAt = Date.parse(summary.startedAt);
    return {
      configurations: accounts.length,
      workers: options.workers,
      concurrency: options.concurrency ?? 'default',
      seconds: round(seconds),
      configurationsPerSecond: round(accounts.length / seconds),
      contactsVerified: verified,
      maxWorkflowEvents: maxEvents,
      eventsPerConfiguration: round(dailyEvents / accounts.length),
      peakWorkerRssMb: Math.max(...peaks),
      meanRunSeconds: phases,
      eventsPerConfigurationByWorkflow: Object.fromEntries(
        Object.entries(byType).map(([type, n]) => [type, round(n / accounts.length)]),
      ),
      meanChildStartMs: Math.round(meanChildStartMs),
      smallSeconds: round((smallClose - startedAt) / 1000),
      ...(largeId ? { largeSeconds: round(((closeTimes.get(largeId) ?? 0) - startedAt) / 1000) } : {}),
    };
  } finally {
    await stack.stop();
  }
}

/** How many contacts of a configuration hold exactly their chunk file value (written once). */
async function verify(
  stack: Stack,
  stores: ReturnType<typeof benchDeps>['stores'],
  configurationId: string,
  accountId: string,
  contacts: number,
): Promise<number> {
  const expected = new Map<string, string>();
  for (const key of await stores.blobs.list(runFiles.prefix(configurationId, RUN_DATE))) {
    if (!/contacts-\d+\.jsonl$/.test(key)) continue;
    for await (const line of stores.blobs.readLines(key)) {
      const { contactId, value } = JSON.parse(line) as { contactId: string; value: string };
      expected.set(contactId, value);
    }
  }
  const text = await (
    await sandboxAdmin(stack.sandbox, `/accounts/${accountId}/lists/list_main/history?field=lcee`)
  ).text();
  let matching = 0;
  for (const line of text.split('\n')) {
    if (!line) continue;
    const h = JSON.parse(line) as { contactId: string; current: string | null; values: string[] };
    if (h.values.length === 1 && expected.get(h.contactId) === h.current) matching++;
  }
  if (matching !== contacts || expected.size !== contacts) {
    throw new Error(
      `VERIFICATION FAILED for ${configurationId}: ${matching} of ${contacts} contacts hold their chunk value`,
    );
  }
  return matching;
}

/** The longest history of any workflow run, the daily run's events in all, and when each configuration's run closed. */
async function histories(stack: Stack, dailyId: string) {
  let maxEvents = 0;
  let dailyEvents = 0;
  const closeTimes = new Map<string, number>();
  const startTimes = new Map<string, number>();
  const dailyRuns: string[] = [];
  const byType: Record<string, number> = {};
  for await (const wf of stack.env.client.workflow.list({ query: '' })) {
    maxEvents = Math.max(maxEvents, wf.historyLength);
    byType[wf.type] = (byType[wf.type] ?? 0) + wf.historyLength;
    if (wf.workflowId === dailyId) {
      dailyEvents += wf.historyLength;
      dailyRuns.push(wf.runId);
    }
    // A run that continued as new is listed once per history: its first began it.
    const began = startTimes.get(wf.workflowId);
    if (began === undefined || wf.startTime.getTime() < began) {
      startTimes.set(wf.workflowId, wf.startTime.getTime());
    }
    const m = /^sync\/(cfg_[a-z0-9]+)\//.exec(wf.workflowId);
    if (m && wf.closeTime) closeTimes.set(m[1]!, wf.closeTime.getTime());
  }
  // Each start-child event of the daily run, against the start of the run it asked for.
  let childStarts = 0;
  let childStartMsTotal = 0;
  for (const runId of dailyRuns) {
    const { events } = await stack.env.client.workflow.getHandle(dailyId, runId).fetchHistory();
    for (const e of events ?? []) {
      const asked = e.startChildWorkflowExecutionInitiatedEventAttributes?.workflowId;
      const started = asked ? startTimes.get(asked) : undefined;
      if (started === undefined || !e.eventTime) continue;
      childStarts++;
      childStartMsTotal += started - tsToMs(e.eventTime);
    }
  }
  const meanChildStartMs = childStarts ? childStartMsTotal / childStarts : 0;
  return { maxEvents, dailyEvents, closeTimes, byType, meanChildStartMs };
}

function round(n: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

/** Waits a moment so the machine settles between scenarios. */
export const settle = () => sleep(2_000);
