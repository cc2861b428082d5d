// `node dist/bench/admin-pages.js [--configurations N] [--runs N] [--rows N] [--clean-run] [--json]`
// (after `npm run build`): how long /admin, a configuration page and a run page take with N
// configurations of M finished runs each in a local store (issue 18's target: 300 ms each on this
// machine). Figures in docs/performance.md.
import { mkdir, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { dirname, join } from 'node:path';
import { Command } from 'commander';
import type { RunSummary } from '../src/runs/summaries';
import { parsePayloadKeys } from '../src/codec';
import { ProcessorRegistry } from '../src/processors/registry';
import { historyKey } from '../src/runs/history';
import { runFiles } from '../src/runs/files';
import { createStores, type Configuration } from '../src/storage';
import { createApp } from '../src/web/app';
import { count } from './args';

const options = new Command()
  .option('--configurations <n>', 'configurations in the store', count, 1_000)
  .option('--runs <n>', 'finished runs of each configuration', count, 100)
  .option('--rows <n>', 'result lines of the measured runs (one chunk file holds 10,000)', count, 10_000)
  .option('--samples <n>', 'requests timed per page', count, 30)
  .option('--clean-run', 'the measured run rejected nothing (2% of its rows otherwise)')
  .option('--dir <dir>', 'the store (default: a new directory under /tmp)')
  .option('--seeded', 'the store in --dir was seeded by an earlier run with the same counts: only measure')
  .option('--json', 'print one JSON object')
  .parse()
  .opts<{
    configurations: number;
    runs: number;
    rows: number;
    samples: number;
    cleanRun?: boolean;
    dir?: string;
    seeded?: boolean;
    json?: boolean;
  }>();

const ADMIN = { user: 'bench', password: 'bench-password-0123456789' };
const DAY_MS = 86_400_000;

function summary(c: Configuration, day: number, clean = false): RunSummary {
  const started = new Date(Date.UTC(2026, 0, 1) + day * DAY_MS + 6 * 3_600_000);
  const run = started.toISOString().slice(0, 10);
  return {
    configurationId: c.id,
    esp: c.esp,
    runDate: run,
    run,
    mode: 'incremental',
    dryRun: false,
    status: 'completed',
    workflowId: `sync/${c.id}/${run}`,
    startedAt: started.toISOString(),
    finishedAt: new Date(started.getTime() + 42_000).toISOString(),
    durationsMs: { maintenance: 900, export: 12_000, dispatch: 29_000, total: 42_000 },
    contacts: { exported: 1_000, alreadySet: 99_000, updated: clean ? 1_000 : 980, rejected: clean ? 0 : 20 },
    rejectedByKind: clean ? {} : { contact_suppressed: 15, invalid_value: 5 },
    chunks: 1,
  };
}

/**
 * Run files are written straight into the local store's objects directory (the layout of
 * docs/storage.md): a put fsyncs each file, and 200,000 of them would take longer than measuring.
 */
async function writeObject(dir: string, key: string, body: string): Promise<void> {
  const file = join(dir, 'blobs', 'objects', key);
  await mkdir(dirname(file), { recursive: true });
  await writeFile(file, body);
}

async function seed(dir: string): Promise<{ measured: Configuration; run: string; contact: string }> {
  const stores = localStores(dir);
  for (let i = 0; i < options.configurations; i++) {
    const last = options.runs - 1;
    const c = await stores.configurations.create({
      esp: 'sandbox',
      accountLabel: `Publisher ${i}`,
      espAccountId: `acct_${i}`,
      espListId: `list_${i}`,
      fieldName: 'lcee',
      status: 'active',
      maintenance: true,
    });
    const summaries = Array.from({ length: options.runs }, (_, day) => summary(c, day));
    await Promise.all(
      summaries.flatMap((s) => {
        const body = JSON.stringify(s, null, 2) + '\n';
        return [writeObject(dir, runFiles.summary(c.id, s.run), body), writeObject(dir, historyKey(s), body)];
      }),
    );
    const newest = summaries[last]!;
    await stores.configurations.update(c.id, (doc) => ({
      ...doc,
      lastRun: {
        status: newest.status,
        run: newest.run,
        workflowId: newest.workflowId,
        finishedAt: newest.finishedAt,
        dryRun: false,
        updated: newest.contacts.updated,
        rejected: newest.contacts.rejected,
      },
    }));
    if (i % 100 === 99) process.stderr.write(`seeded ${i + 1} configurations\n`);
  }
  // The measured run's results: `rows` lines, 2% rejected (none with --clean-run, its summary
  // counting none), in 10,000-line chunk files.
  const { measured, run, contact } = await seededTargets(dir);
  if (options.cleanRun) {
    const s = summary(measured, options.runs - 1, true);
    const body = JSON.stringify(s, null, 2) + '\n';
    await Promise.all([
      writeObject(dir, runFiles.summary(measured.id, s.run), body),
      writeObject(dir, historyKey(s), body),
    ]);
  }
  for (let chunk = 1, line = 0; line < options.rows; chunk++) {
    const lines: string[] = [];
    for (; lines.length < 10_000 && line < options.rows; line++) {
      const contactId = `ct_${String(line).padStart(8, '0')}`;
      if (line % 50 === 7 && !options.cleanRun) {
        lines.push(
          JSON.stringify({
            contactId,
            value: null,
            status: 'rejected',
            reason: 'contact_suppressed: suppressed',
          }),
        );
      } else lines.push(JSON.stringify({ contactId, value: `v${line}`, status: 'updated' }));
    }
    await writeObject(dir, runFiles.results(measured.id, run, chunk), lines.join('\n') + '\n');
  }
  return { measured, run, contact };
}

/**
 * The configuration in the middle of the id order, its newest run, and the last rejected contact
 * (with --clean-run, the contact on that line, updated).
 */
async function seededTargets(dir: string) {
  const { items } = await localStores(dir).configurations.page({
    limit: Math.floor(options.configurations / 2) + 1,
  });
  const measured = items[items.length - 1] as Configuration;
  const last = [...Array(options.rows).keys()].filter((line) => line % 50 === 7).pop()!;
  return {
    measured,
    run: summary(measured, options.runs - 1).run,
    contact: `ct_${String(last).padStart(8, '0')}`,
  };
}

function localStores(dir: string) {
  return createStores({
    kind: 'local',
    blobDir: join(dir, 'blobs'),
    secretDir: join(dir, 'secrets'),
    secretKeyFile: join(dir, 'secret.key'),
  });
}

async function time(
  base: string,
  path: string,
): Promise<{ path: string; medianMs: number; p95Ms: number; maxMs: number }> {
  const auth = `Basic ${Buffer.from(`${ADMIN.user}:${ADMIN.password}`).toString('base64')}`;
  const once = async () => {
    const started = performance.now();
    const res = await fetch(`${base}${path}`, { headers: { authorization: auth } });
    await res.arrayBuffer();
    if (res.status !== 200) throw new Error(`${path} answered ${res.status}`);
    return performance.now() - started;
  };
  for (let i = 0; i < 3; i++) await once();
  const ms: number[] = [];
  for (let i = 0; i < options.samples; i++) ms.push(await once());
  ms.sort((a, b) => a - b);
  const at = (q: number) => Math.round(ms[Math.min(ms.length - 1, Math.floor(q * ms.length))]! * 10) / 10;
  return { path, medianMs: at(0.5), p95Ms: at(0.95), maxMs: at(1) };
}

async function main() {
  const dir = options.dir ?? join('/tmp', `espresso-admin-bench-${Date.now()}`);
  const seededAt = performance.now();
  const { measured, run, contact } = options.seeded ? await seededTargets(dir) : await seed(dir);
  const seedSeconds = Math.round((performance.now() - seededAt) / 100) / 10;
  const stores = localStores(dir);
  const app = createApp({
    stores,
    processors: new ProcessorRegistry([]),
    temporal: () => Promise.reject(new Error('no Temporal: no run is in progress in this store')),
    temporalNamespace: 'default',
    temporalUiUrl: 'http://localhost:8233',
    payloadKeys: parsePayloadKeys(`bench:${Buffer.alloc(32, 1).toString('base64')}`),
    web: { publicUrl: 'http://127.0.0.1', sessionSecret: 'b'.repeat(40), admin: ADMIN },
  });
  const server = app.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const page = `/admin/configurations/${measured.id}`;
  const pages = [
    '/admin',
    `/admin?after=${measured.id}`,
    page,
    `${page}?after=${encodeURIComponent(historyKey(summary(measured, 50)).split('/').pop()!)}`,
    `${page}/runs/${run}`,
    `${page}/runs/${run}?contact=${contact}`,
  ];
  const timings = [];
  for (const path of pages) timings.push(await time(base, path));
  server.close();
  const result = {
    configurations: options.configurations,
    runsEach: options.runs,
    measuredRunRows: options.rows,
    seedSeconds,
    store: dir,
    timings,
  };
  if (options.json) console.log(JSON.stringify(result, null, 2));
  else {
    console.log(
      `${options.configurations} configurations × ${options.runs} runs (seeded in ${seedSeconds} s, ${dir})`,
    );
    for (const t of timings)
      console.log(`${t.path}\n  median ${t.medianMs} ms, p95 ${t.p95Ms} ms, max ${t.maxMs} ms`);
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
