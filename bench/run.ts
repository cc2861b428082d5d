// `npm run bench [-- --json] [--contacts N] [--per-contact N] [--limited N] [--growth]`
// Measures espresso's pipeline against the machine's own limit for the same ESP, then on ESP-like
// limits (`--split-limit`, `--profiles`: only those). See docs/performance.md. The dev server keeps
// its state in memory, or in a SQLite file with `--server-db-file`.
// `npm run bench -- --fleet [--json] [--fleet-size N] [--daily-concurrency N] [--cluster]`: the fleet
// figures (docs/scale.md) instead; with --cluster on the production topology, 3 workers on one account.
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { count } from './args';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { projectRoot } from '../src/paths';
import { barChart } from './chart';
import { limitedAccounts, PROFILE_CONTACTS, profileRun, splitLimit } from './limits';
import { direct, perContact, pipeline } from './scenarios';
import { fleetRun, pacing, settle } from './fleet';
import { PROFILE_NAMES, type ProfileName } from '../src/sandbox/profiles';
import { ACCOUNTS, startStack, type Stack } from './stack';

const options = new Command()
  .option('--json', 'print one JSON object on stdout (progress goes to stderr)')
  .option('--contacts <n>', 'contacts for the pipeline and direct scenarios', count, 200_000)
  .option('--per-contact <n>', 'contacts for the one-activity-per-contact scenario', count, 5_000)
  .option('--limited <n>', 'contacts for the rate-limited scenario', count, 50_000)
  .option('--growth', 'also run the pipeline at 10,000, 100,000 and 1,000,000 contacts')
  .option('--split-limit', 'run the split-limit scenario (and --profiles if given) only')
  .option('--split-contacts <n>', 'contacts for the split-limit scenario', count, 200_000)
  .option(
    '--profiles [names...]',
    'run the real-ESP profile scenarios, or the ones named (and --split-limit if given) only',
  )
  .option('--profile-contacts <n>', 'contacts for every profile run (default: a size per profile)', count)
  .option(
    '--runs <n>',
    'run the pipeline and direct pair, split-limit and each profile this many times: the median, and every run',
    count,
    1,
  )
  .option('--fleet', 'measure the fleet instead: workers on one account, and a daily run over many')
  .option('--fleet-size <n>', 'configurations in the fleet daily run', count, 1_000)
  .option('--fleet-contacts <n>', 'contacts of the one-account pacing runs', count, 100_000)
  .option('--daily-concurrency <n>', 'also run the fleet daily run with this concurrency', count)
  .option('--one-account', 'with --fleet: only the runs on one limited account (workers, sharedAccount)')
  .option('--cluster', 'with --fleet: run on `espresso cluster` (PostgreSQL, Temporal server, moto)')
  .option(
    '--server-db-file',
    "keep the dev server's state in a SQLite file (as `npm start` does), not in memory",
  )
  .option('--results-dir <dir>', 'where the JSON and SVG results go', join(projectRoot, 'bench', 'results'))
  .parse()
  .opts<{
    json?: boolean;
    contacts: number;
    perContact: number;
    limited: number;
    growth?: boolean;
    splitLimit?: boolean;
    splitContacts: number;
    profiles?: boolean | string[];
    profileContacts?: number;
    runs: number;
    fleet?: boolean;
    fleetSize: number;
    fleetContacts: number;
    dailyConcurrency?: number;
    oneAccount?: boolean;
    cluster?: boolean;
    serverDbFile?: boolean;
    resultsDir: string;
  }>();

const say = (msg: string) => (options.json ? process.stderr : process.stdout).write(`[bench] ${msg}\n`);

/** The profiles `--profiles` names (all of them when it names none); an unknown name stops the bench. */
function profileNames(): ProfileName[] {
  const named = Array.isArray(options.profiles) ? options.profiles : PROFILE_NAMES;
  const unknown = named.filter((name) => !(PROFILE_NAMES as string[]).includes(name));
  if (unknown.length > 0) {
    throw new Error(`unknown profile ${unknown.join(', ')}: the profiles are ${PROFILE_NAMES.join(', ')}`);
  }
  return named as ProfileName[];
}

/**
 * The median of `items` ordered best first by `order`; of an even number, the worse of the two in
 * the middle.
 */
function worseMedian<T>(items: T[], order: (a: T, b: T) => number): T {
  return [...items].sort(order)[Math.floor(items.length / 2)]!;
}

/**
 * A limited scenario run `--runs` times (one after another, on the same stack): the median run by
 * seconds (of an even number, the slower of the two in the middle), and with more than one run the
 * figures of each (`runs`, in the order they ran). Runs of the same code on this machine differ by
 * a fifth and more (docs/performance.md, "The spread between runs").
 */
async function repeated<T extends RunFigures>(scenario: () => Promise<T>): Promise<Repeated<T>> {
  const results: T[] = [];
  for (let i = 0; i < options.runs; i++) {
    if (options.runs > 1) say(`  run ${i + 1} of ${options.runs}`);
    results.push(await scenario());
  }
  const median = worseMedian(results, (a, b) => a.seconds - b.seconds);
  if (results.length === 1) return median;
  const runs = results.map(({ seconds, boundRatio, responses429 }) => ({
    seconds,
    boundRatio,
    responses429,
  }));
  return { ...median, runs };
}

/** No limits on the open account: the pacing is set wide so the machine is the limit. */
const OPEN = { rps: 100_000, concurrency: 8 };
const LIMITED = { rps: ACCOUNTS.limited.requestsPerSecond, concurrency: ACCOUNTS.limited.concurrency };

async function main(): Promise<void> {
  // Signals stop the bench stack (bench/stack.ts), not only the SDK's workers.
  Runtime.install({ logger: new DefaultLogger('ERROR'), shutdownSignals: [] });
  if (options.cluster && options.serverDbFile) {
    throw new Error('--server-db-file is for the dev server: the cluster keeps its state in PostgreSQL');
  }
  if (options.fleet) return fleetMain();
  if (options.cluster) throw new Error('--cluster runs only the fleet benchmark: add --fleet');
  const names = profileNames();
  say(`starting dev server, Sandbox ESP (${cpus().length} cores, Node ${process.version})`);
  const stack = await startStack({ accounts: limitedAccounts(), serverDbFile: options.serverDbFile });
  try {
    const only = options.splitLimit || options.profiles;
    const report: Report = {
      machine: { cores: cpus().length, node: process.version, date: new Date().toISOString() },
      topology: temporalTopology(),
      ...(only ? {} : await unlimited(stack)),
    };
    if (!only || options.splitLimit) {
      say(
        `split limit: ${options.splitContacts} contacts, listing 20 req/s, writing 40 req/s, 50 ms latency`,
      );
      report.splitLimit = await repeated(() => splitLimit(stack, options.splitContacts));
    }
    if (!only || options.profiles) {
      report.profiles = [];
      for (const profile of names) {
        const contacts = options.profileContacts ?? PROFILE_CONTACTS[profile];
        say(`profile ${profile}: ${contacts} contacts`);
        report.profiles.push(await repeated(() => profileRun(stack, profile, contacts)));
      }
    }
    await save(report);
    if (options.json) console.log(JSON.stringify(report));
    else printTable(report);
  } finally {
    await stack.stop();
  }
}

/** The scenarios without ESP limits, and the one with today's single limit. */
async function unlimited(stack: Stack): Promise<Unlimited> {
  // With --runs, the pipeline and the direct loop run in pairs, one right after the other: the
  // figures are the pair with the median ratio's, and every pair's ratio is kept.
  const pairs = [];
  for (let i = 0; i < options.runs; i++) {
    say(
      `pipeline: ${options.contacts} contacts${options.runs > 1 ? ` (pair ${i + 1} of ${options.runs})` : ''}`,
    );
    const p = await pipeline(stack, options.contacts, OPEN, ACCOUNTS.open);
    say(`direct: ${options.contacts} contacts`);
    const d = await direct(stack, options.contacts, OPEN, ACCOUNTS.open);
    pairs.push({ p, d, ratio: round(p.contactsPerSecond / d.contactsPerSecond) });
  }
  // Of an even number, the lower of the two in the middle ratios.
  const { p, d } = worseMedian(pairs, (a, b) => b.ratio - a.ratio);
  say(`per-contact: ${options.perContact} contacts`);
  const pc = await perContact(stack, options.perContact, OPEN, ACCOUNTS.open);
  say(
    `rate-limited pipeline: ${options.limited} contacts, limit ${LIMITED.rps} req/s, ${LIMITED.concurrency} concurrent`,
  );
  const rl = await pipeline(stack, options.limited, LIMITED, ACCOUNTS.limited);
  const growth = [];
  if (options.growth) {
    for (const n of [10_000, 100_000, 1_000_000]) {
      say(`growth: pipeline at ${n} contacts`);
      const g = await pipeline(stack, n, OPEN, ACCOUNTS.open);
      growth.push({
        contacts: n,
        seconds: g.seconds,
        contactsPerSecond: g.contactsPerSecond,
        peakWorkerRssMb: g.peakWorkerRssMb,
        maxHistoryEvents: g.maxHistoryEvents,
      });
    }
  }
  // Requests per second while the run was talking to the ESP (first to last request).
  const achievedRps = rl.requests / rl.requestSeconds;
  return {
    contacts: options.contacts,
    pipeline: {
      seconds: p.seconds,
      contactsPerSecond: p.contactsPerSecond,
      maxHistoryEvents: p.maxHistoryEvents,
      peakWorkerRssMb: p.peakWorkerRssMb,
      cpuSeconds: p.cpuSeconds,
    },
    direct: d,
    perContact: pc,
    ratios: {
      pipelineVsDirect: round(p.contactsPerSecond / d.contactsPerSecond),
      pipelineVsPerContact: round(p.contactsPerSecond / pc.contactsPerSecond),
      ...(pairs.length > 1 ? { pipelineVsDirectRuns: pairs.map((pair) => pair.ratio) } : {}),
    },
    rateLimited: {
      contacts: options.limited,
      seconds: rl.seconds,
      limitRps: LIMITED.rps,
      achievedRps: round(achievedRps),
      utilization: round(achievedRps / LIMITED.rps),
      share429: round(rl.responses429 / Math.max(1, rl.requests), 4),
      requests: rl.requests,
    },
    ...(growth.length ? { growth } : {}),
  };
}

/** `--fleet`: one JSON object whose `fleet` key holds every figure (docs/scale.md). */
async function fleetMain(): Promise<void> {
  const cluster = Boolean(options.cluster);
  const topology = { cluster, serverDbFile: options.serverDbFile };
  say(`fleet benchmark${cluster ? ' on the cluster' : ''} (${cpus().length} cores, Node ${process.version})`);
  const workers = [];
  // The cluster's pacing target is met with 3 workers (the topology's default).
  for (const w of cluster ? [3] : [1, 2, 4]) {
    workers.push(await pacing(say, w, 1, options.fleetContacts, topology));
    await settle();
  }
  const sharedAccount = await pacing(say, cluster ? 3 : 2, 2, options.fleetContacts, topology);
  if (options.oneAccount) return report({ workers, sharedAccount });
  await settle();
  const run = await fleetRun(say, { size: options.fleetSize, workers: 1, ...topology });
  await settle();
  const runTwoWorkers = await fleetRun(say, { size: options.fleetSize, workers: 2, ...topology });
  await settle();
  const large = await fleetRun(say, { size: options.fleetSize, workers: 1, large: 500_000, ...topology });
  const tuned = options.dailyConcurrency
    ? await fleetRun(say, {
        size: options.fleetSize,
        workers: 1,
        concurrency: options.dailyConcurrency,
        ...topology,
      })
    : undefined;
  const fleetRunFigures = ({
    smallSeconds: _s,
    largeSeconds: _l,
    ...figures
  }: Awaited<ReturnType<typeof fleetRun>>) => figures;
  await report({
    workers,
    sharedAccount,
    run: fleetRunFigures(run),
    runTwoWorkers: fleetRunFigures(runTwoWorkers),
    withLarge: {
      configurations: large.configurations,
      largeContacts: 500_000,
      smallSeconds: large.smallSeconds,
      smallSecondsWithoutLarge: run.smallSeconds,
      smallDelaySeconds: round(large.smallSeconds - run.smallSeconds),
      largeSeconds: large.largeSeconds,
    },
    ...(tuned ? { tuned: fleetRunFigures(tuned) } : {}),
  });
}

/** Where this run's Temporal ran, as its results file says. */
function temporalTopology(): string {
  if (options.cluster) return 'cluster';
  return options.serverDbFile ? 'dev server, SQLite file' : 'dev server, in memory';
}

/** Writes the fleet figures to the results folder and prints them. */
async function report(fleet: Record<string, unknown>): Promise<void> {
  const out = {
    machine: { cores: cpus().length, node: process.version, date: new Date().toISOString() },
    topology: temporalTopology(),
    fleet,
  };
  const dir = options.resultsDir;
  await mkdir(dir, { recursive: true });
  const file = join(dir, `fleet-${out.machine.date.replace(/[:.]/g, '-')}.json`);
  await writeFile(file, JSON.stringify(out, null, 2) + '\n');
  say(`results written to ${file}`);
  if (options.json) console.log(JSON.stringify(out));
  else console.log(JSON.stringify(out.fleet, null, 2));
}

type Unlimited = {
  contacts: number;
  pipeline: {
    seconds: number;
    contactsPerSecond: number;
    maxHistoryEvents: number;
    peakWorkerRssMb: number;
    /** CPU seconds the worker, the Sandbox and the dev server used during the run. */
    cpuSeconds: CpuSeconds<'worker'>;
  };
  /** cpuSeconds: the loop's own process, the Sandbox and the dev server. */
  direct: { seconds: number; contactsPerSecond: number; cpuSeconds: CpuSeconds<'loop'> };
  perContact: { contacts: number; seconds: number; contactsPerSecond: number };
  /** pipelineVsDirectRuns: with --runs over 1, every pair's ratio (the median pair's is pipelineVsDirect). */
  ratios: { pipelineVsDirect: number; pipelineVsPerContact: number; pipelineVsDirectRuns?: number[] };
  rateLimited: {
    contacts: number;
    seconds: number;
    limitRps: number;
    achievedRps: number;
    utilization: number;
    share429: number;
    requests: number;
  };
  growth?: Array<{ contacts: number; seconds: number; contactsPerSecond: number; peakWorkerRssMb: number }>;
};

type CpuSeconds<K extends string> = Partial<Record<K | 'sandbox' | 'temporal', number>>;

type RunFigures = { seconds: number; boundRatio: number; responses429: number };
/** A limited scenario's median run, and with `--runs` over 1 every run's figures. */
type Repeated<T extends RunFigures> = T & { runs?: RunFigures[] };

/** Without --split-limit or --profiles alone, every part. */
type Report = Partial<Unlimited> & {
  machine: { cores: number; node: string; date: string };
  topology: string;
  splitLimit?: Repeated<Awaited<ReturnType<typeof splitLimit>>>;
  profiles?: Array<Repeated<Awaited<ReturnType<typeof profileRun>>>>;
};

async function save(report: Report): Promise<void> {
  const dir = options.resultsDir;
  await mkdir(dir, { recursive: true });
  const stamp = report.machine.date.replace(/[:.]/g, '-');
  await writeFile(join(dir, `${stamp}.json`), JSON.stringify(report, null, 2) + '\n');
  if (!report.pipeline) {
    say(`results written to ${join(dir, stamp)}.json`);
    return;
  }
  const r = report as Report & Unlimited;
  const bars = [
    { label: `pipeline ${r.contacts}`, value: r.pipeline.contactsPerSecond },
    { label: `direct ${r.contacts}`, value: r.direct.contactsPerSecond },
    { label: `per-contact ${r.perContact.contacts}`, value: r.perContact.contactsPerSecond },
    {
      label: `rate-limited ${r.rateLimited.contacts}`,
      value: Math.round(r.rateLimited.contacts / r.rateLimited.seconds),
    },
    ...(r.growth ?? []).map((g) => ({ label: `pipeline ${g.contacts}`, value: g.contactsPerSecond })),
  ];
  await writeFile(
    join(dir, `${stamp}.svg`),
    barChart(`contacts/s (${r.machine.cores} cores, Node ${r.machine.node})`, bars),
  );
  say(`results written to ${join(dir, stamp)}.json and .svg`);
}

function printTable(report: Report): void {
  const rows: Array<[string, string]> = [];
  if (report.pipeline) {
    const r = report as Report & Unlimited;
    rows.push(
      [
        'pipeline',
        `${r.pipeline.contactsPerSecond} contacts/s (${r.contacts} in ${r.pipeline.seconds} s), max ${r.pipeline.maxHistoryEvents} history events, worker peak ${r.pipeline.peakWorkerRssMb} MB`,
      ],
      ['pipeline CPU', cpuText(r.pipeline.cpuSeconds)],
      ['direct', `${r.direct.contactsPerSecond} contacts/s (${r.direct.seconds} s)`],
      ['direct CPU', cpuText(r.direct.cpuSeconds)],
      [
        'per-contact',
        `${r.perContact.contactsPerSecond} contacts/s (${r.perContact.contacts} in ${r.perContact.seconds} s)`,
      ],
      [
        'pipeline / direct',
        `${r.ratios.pipelineVsDirect}${r.ratios.pipelineVsDirectRuns ? `, pairs: ${r.ratios.pipelineVsDirectRuns.join(', ')}` : ''}`,
      ],
      ['pipeline / per-contact', String(r.ratios.pipelineVsPerContact)],
      [
        'rate-limited',
        `${r.rateLimited.achievedRps} req/s of ${r.rateLimited.limitRps} (utilization ${r.rateLimited.utilization}), 429 share ${r.rateLimited.share429}`,
      ],
      ...(r.growth ?? []).map((g): [string, string] => [
        `growth ${g.contacts}`,
        `${g.contactsPerSecond} contacts/s (${g.seconds} s), worker peak ${g.peakWorkerRssMb} MB`,
      ]),
    );
  }
  const s = report.splitLimit;
  if (s) {
    rows.push([
      'split limit',
      `${s.contacts} in ${s.seconds} s, bound ${s.boundSeconds} s (ratio ${s.boundRatio}), first write after ${s.firstWriteSeconds} s${runsText(s.runs)}`,
    ]);
  }
  for (const p of report.profiles ?? []) {
    rows.push([
      `profile ${p.profile}`,
      `${p.contacts} in ${p.seconds} s, bound ${p.boundSeconds} s (ratio ${p.boundRatio}), 1,000,000 in about ${p.projected1MSeconds} s${runsText(p.runs)}`,
    ]);
  }
  const width = Math.max(...rows.map(([k]) => k.length));
  for (const [k, v] of rows) console.log(`${k.padEnd(width)}  ${v}`);
}

/** ", runs: 13.1, 12.9, 13.4 s": every run's seconds, when there were several (the median's shown). */
function runsText(runs: Array<{ seconds: number }> | undefined): string {
  return runs ? `, runs: ${runs.map((r) => r.seconds).join(', ')} s` : '';
}

/** "worker 3.2 s, sandbox 1.0 s, temporal 0.4 s": CPU seconds per process. */
function cpuText(cpu: Record<string, number | undefined>): string {
  return Object.entries(cpu)
    .map(([name, seconds]) => `${name} ${seconds} s`)
    .join(', ');
}

function round(n: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

main().catch((err) => {
  console.error(`[bench] FAILED: ${(err as Error).message}`);
  process.exit(1);
});
