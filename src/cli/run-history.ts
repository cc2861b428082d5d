// `espresso runs list` and `espresso runs show`: the facts of the admin's configuration and run
// pages (src/web/run-routes.ts), read from the same blob store files.
import type { Command } from 'commander';
import type { RunSummary } from '../runs/summaries';
import { runFolderSchema } from '../runs/files';
import { historyCursorPattern, runHistory, runSummary } from '../runs/history';
import { rejectedRows, resultCursorPattern } from '../runs/results';
import { configurationIdSchema, createStores, NotFoundError, type Stores } from '../storage';
import { workflowUrl } from '../temporal/client';
import { loadConfigOrExit } from '../load-config';

function limit(max: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1 || n > max)
      throw new Error(`--limit: ${value} is not a number from 1 to ${max}`);
    return n;
  };
}

async function existing(stores: Stores, configurationId: string): Promise<void> {
  if (!configurationIdSchema.safeParse(configurationId).success)
    throw new Error(`${JSON.stringify(configurationId)} is not a configuration id`);
  try {
    await stores.configurations.get(configurationId);
  } catch (err) {
    if (err instanceof NotFoundError) throw new Error(`no configuration ${configurationId}`);
    throw err;
  }
}

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

function printTable(header: string[], rows: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  for (const cells of [header, ...rows])
    console.log(
      cells
        .map((c, i) => c.padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    );
}

async function listRuns(configurationId: string, opts: { json?: boolean; limit: number; after?: string }) {
  const config = loadConfigOrExit();
  const stores = createStores(config.storage);
  await existing(stores, configurationId);
  if (opts.after && !historyCursorPattern.test(opts.after))
    throw new Error(`--after: ${JSON.stringify(opts.after)} is not a page of this history`);
  const page = await runHistory(stores.blobs, configurationId, { after: opts.after, limit: opts.limit });
  const more = page.next ? `more: espresso runs list ${configurationId} --after ${page.next}` : '';
  if (opts.json) {
    const runs = page.runs.map((s) => ({ ...s, temporalUrl: workflowUrl(config, s.workflowId) }));
    console.log(JSON.stringify(runs, null, 2));
    if (more) console.error(more);
    return;
  }
  if (page.runs.length === 0 && !opts.after)
    return void console.log(`no finished run of ${configurationId} yet`);
  printTable(
    ['run', 'started (UTC)', 'mode', 'status', 'exported', 'updated', 'rejected', 'took'],
    page.runs.map((s) => [
      s.run,
      s.startedAt.slice(0, 19).replace('T', ' '),
      s.mode,
      `${s.status}${s.dryRun ? ' (dry run)' : ''}`,
      String(s.contacts.exported),
      String(s.contacts.updated),
      String(s.contacts.rejected),
      seconds(s.durationsMs.total),
    ]),
  );
  if (more) console.log(more);
}

async function showRun(
  configurationId: string,
  run: string,
  opts: { json?: boolean; limit: number; after?: string },
) {
  const config = loadConfigOrExit();
  const stores = createStores(config.storage);
  await existing(stores, configurationId);
  const folder = runFolderSchema.safeParse(run);
  if (!folder.success) throw new Error(`run ${run}: ${folder.error.issues[0]!.message}`);
  if (opts.after && !resultCursorPattern.test(opts.after))
    throw new Error(`--after: ${JSON.stringify(opts.after)} is not a page of these rows`);
  const summary = await runSummary(stores.blobs, configurationId, folder.data);
  if (!summary) throw new Error(`no finished run ${run} of ${configurationId}`);
  const rejected = await rejectedRows(stores.blobs, configurationId, folder.data, {
    after: opts.after,
    limit: opts.limit,
  });
  const more = rejected.next
    ? `more: espresso runs show ${configurationId} ${run} --after ${rejected.next}`
    : '';
  const temporalUrl = workflowUrl(config, summary.workflowId);
  if (opts.json) {
    console.log(JSON.stringify({ summary, temporalUrl, rejected: rejected.rows }, null, 2));
    if (more) console.error(more);
    return;
  }
  printSummary(summary, temporalUrl);
  if (rejected.rows.length) {
    console.log('\nrejected rows (chunk:line contact reason):');
    for (const r of rejected.rows) console.log(`  ${r.chunk}:${r.line}  ${r.contactId}  ${r.reason ?? ''}`);
  }
  if (more) console.log(more);
}

function printSummary(s: RunSummary, temporalUrl: string): void {
  const d = s.durationsMs;
  console.log(`run ${s.run} of ${s.configurationId}: ${s.status}${s.dryRun ? ' (dry run)' : ''}, ${s.mode}`);
  if (s.reason) console.log(`  reason: ${s.reason}`);
  console.log(`  started ${s.startedAt}, finished ${s.finishedAt}`);
  console.log(
    `  took ${seconds(d.total)} (maintenance ${seconds(d.maintenance)}, export ${seconds(d.export)}, dispatch ${seconds(d.dispatch)})`,
  );
  const c = s.contacts;
  console.log(
    `  exported ${c.exported}, already set ${c.alreadySet}, updated ${c.updated}, rejected ${c.rejected}`,
  );
  for (const [kind, n] of Object.entries(s.rejectedByKind).sort((a, b) => b[1] - a[1]))
    console.log(`  rejected ${kind}: ${n}`);
  console.log(`  ${temporalUrl}`);
}

export function registerRunHistoryCommands(program: Command): void {
  const runs = program.command('runs').description("a configuration's finished runs and their results");
  runs
    .command('list <configurationId>')
    .description('finished runs, newest first, a page at a time (as on the admin configuration page)')
    .option('--json', 'print JSON (an array of run summaries, each with its temporalUrl)')
    .option('--limit <n>', 'runs per page (1-1000)', limit(1000), 20)
    .option('--after <cursor>', 'the page after this one (printed at the end of a page)')
    .action(listRuns);
  runs
    .command('show <configurationId> <run>')
    .description('one run: counts, durations, rejections by kind and rejected rows (as on its admin page)')
    .option('--json', 'print JSON ({summary, temporalUrl, rejected})')
    .option('--limit <n>', 'rejected rows per page (1-10000)', limit(10_000), 50)
    .option('--after <chunk-line>', 'the rejected rows after this one (printed at the end of a page)')
    .action(showRun);
}
