import type { Command } from 'commander';
import { cliActor, recordAudit } from '../audit/log';
import { ConnectError, saveConnection, setEnabled } from '../connect';
import { createDeps } from '../deps';
import { createCommandLogger } from '../logger';
import { EspError } from '../processors/errors';
import { UnknownEspError } from '../processors/registry';
import {
  configurationIdSchema,
  isUnreadable,
  NotFoundError,
  type Configuration,
  type ListedConfigurationDocument,
} from '../storage';
import { connectClient, workflowUrl } from '../temporal/client';
import { RunInProgressError, startConfigurationRun, today } from '../temporal/runs';
import { latestSummary } from '../runs/summaries';
import { loadConfigOrExit } from '../load-config';

/** `espresso connect` (headless, API-key ESPs) and `espresso configurations ...`. */
export function registerConfigurationCommands(program: Command): void {
  program
    .command('connect <esp>')
    .description(
      'connect an ESP account with an API key, validated like the web form, and start its first run',
    )
    .requiredOption('--api-key <key>', 'the API key, or - to read it from standard input')
    .option('--list <id>', 'the ESP list/audience (required when the account has several)')
    .option('--no-first-run', 'do not start the first run')
    .action(async (esp: string, opts: { apiKey: string; list?: string; firstRun: boolean }) => {
      const { config, deps } = cliDeps();
      const apiKey = opts.apiKey === '-' ? (await readStdin()).trim() : opts.apiKey;
      let processor;
      try {
        processor = deps.processors.get(esp);
      } catch (err) {
        if (err instanceof UnknownEspError) {
          throw new Error(
            `${err.message}; known: ${deps.processors
              .list()
              .map((p) => p.descriptor.id)
              .join(', ')}`,
          );
        }
        throw err;
      }
      try {
        const { credentials, account } = await processor.connectWithApiKey(apiKey);
        const { configuration, created } = await saveConnection(deps, {
          esp,
          credentials,
          account,
          listId: opts.list,
        });
        await recordAudit(deps.stores.blobs, {
          actor: cliActor(),
          action: 'connect',
          configurationId: configuration.id,
          ...(created ? { detail: 'new configuration' } : {}),
          address: 'local',
        });
        console.log(`${created ? 'connected' : 'updated'} ${configuration.id}: ${describe(configuration)}`);
        if (configuration.status === 'disabled') {
          console.log(
            'it stays disabled, as an operator set it: `espresso configurations enable` resumes it',
          );
          return;
        }
        if (!opts.firstRun) return;
        const { client, close } = await connectClient(config, deps.stores.secrets);
        try {
          const handle = await startConfigurationRun(
            client,
            deps.stores,
            { configurationId: configuration.id, runDate: today(), mode: 'full' },
            'first-run',
          );
          console.log(`first run started: ${handle.workflowId}\n  ${workflowUrl(config, handle.workflowId)}`);
        } catch (err) {
          // A run already writing the configuration goes on with the new credentials.
          if (!(err instanceof RunInProgressError)) throw err;
          console.log(`first run not started: ${err.message}`);
        } finally {
          await close();
        }
      } catch (err) {
        // Typed errors carry safe messages (never the key); anything else is summarised.
        if (err instanceof EspError || err instanceof ConnectError) throw new Error(err.message);
        throw err;
      }
    });

  const configurations = program.command('configurations').description('connected ESP accounts');

  configurations
    .command('list')
    .description('configurations in id order, a page at a time, as a table (or JSON)')
    .option('--json', 'print JSON (an array of configurations; unreadable ones as {id, unreadable})')
    .option('--limit <n>', 'configurations per page (1-1000)', pageLimit, 100)
    .option('--after <id>', 'the page after this configuration id (printed at the end of a page)')
    .option('--esp <esp>', 'only this ESP')
    .option('--status <status>', 'only this status: active, needs_reauth, disabled or unreadable')
    .action(
      async (opts: { json?: boolean; limit: number; after?: string; esp?: string; status?: string }) => {
        const { stores } = cliDeps().deps;
        if (opts.after && !configurationIdSchema.safeParse(opts.after).success)
          throw new Error(`--after: ${JSON.stringify(opts.after)} is not a configuration id`);
        const filtered = opts.esp || opts.status;
        const { items, next } = await stores.configurations.page({
          after: opts.after,
          limit: opts.limit,
          ...(filtered
            ? {
                match: (c: ListedConfigurationDocument) =>
                  isUnreadable(c)
                    ? (!opts.status || opts.status === 'unreadable') && !opts.esp
                    : (!opts.status || c.status === opts.status) && (!opts.esp || c.esp === opts.esp),
              }
            : {}),
        });
        const more = next ? `more: espresso configurations list --after ${next}` : '';
        if (opts.json) {
          console.log(JSON.stringify(items, null, 2));
          if (more) console.error(more);
          return;
        }
        if (items.length === 0 && !opts.after && !filtered)
          return void console.log(
            'no configurations yet: connect one with `espresso connect` or the web page',
          );
        const rows = items.map((c) =>
          isUnreadable(c)
            ? [c.id, '-', '-', '-', 'unreadable', c.unreadable]
            : [
                c.id,
                c.esp,
                c.accountLabel,
                c.espListId ?? '-',
                c.status,
                c.lastRun ? `${c.lastRun.status} ${c.lastRun.run}` : '-',
              ],
        );
        printTable(['id', 'esp', 'account', 'list', 'status', 'last run'], rows);
        if (more) console.log(more);
      },
    );

  configurations
    .command('show <id>')
    .description('one configuration and its latest run summary')
    .action(async (id: string) => {
      const { stores } = cliDeps().deps;
      const configuration = await getOrExplain(stores, id);
      const latestRun = (await latestSummary(stores.blobs, id)) ?? null;
      console.log(JSON.stringify({ configuration, latestRun }, null, 2));
    });

  for (const [name, status] of [
    ['disable', 'disabled'],
    ['enable', 'active'],
  ] as const) {
    configurations
      .command(`${name} <id>`)
      .description(
        name === 'disable' ? 'stop daily runs for a configuration' : 'resume daily runs for a configuration',
      )
      .action(async (id: string) => {
        const { deps } = cliDeps();
        await getOrExplain(deps.stores, id);
        const updated = await setEnabled(deps, id, status === 'active');
        await recordAudit(deps.stores.blobs, {
          actor: cliActor(),
          action: name,
          configurationId: id,
          address: 'local',
        });
        console.log(`${updated.id} is ${updated.status}`);
      });
  }
}

function pageLimit(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 1_000)
    throw new Error(`--limit: ${value} is not a number from 1 to 1000`);
  return n;
}

/** The configuration and what commands need from it, loaded once per command. */
function cliDeps() {
  const config = loadConfigOrExit();
  return { config, deps: createDeps(config, createCommandLogger('cli')) };
}

async function getOrExplain(
  stores: ReturnType<typeof createDeps>['stores'],
  id: string,
): Promise<Configuration> {
  try {
    return await stores.configurations.get(id);
  } catch (err) {
    if (err instanceof NotFoundError) throw new Error(`no configuration ${id}`);
    if (err instanceof Error && err.name === 'ZodError')
      throw new Error(`${JSON.stringify(id)} is not a configuration id`);
    throw err;
  }
}

function describe(c: Configuration): string {
  return `${c.esp} account "${c.accountLabel}" (${c.espAccountId}${c.espListId ? `, list ${c.espListId}` : ''}), field ${c.fieldName}, ${c.status}`;
}

function printTable(header: string[], rows: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  console.log(line(header));
  for (const row of rows) console.log(line(row));
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}
