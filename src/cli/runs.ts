import type { Command } from 'commander';
import { cliActor, recordAudit } from '../audit/log';
import type { ConfigurationSyncResult } from '../workflows/configuration-sync';
import { runDateSchema, runFolderSchema } from '../runs/files';
import { checkRedispatchable } from '../runs/redispatch';
import type { AppConfig } from '../config';
import { configurationIdSchema, createStores, NotFoundError, type Stores } from '../storage';
import { connectClient, workflowUrl } from '../temporal/client';
import { startConfigurationRun, today } from '../temporal/runs';
import { describeKeyUse } from '../temporal/payload-key-use';
import { applySchedule, type ScheduleApplied } from '../temporal/schedule';
import { loadConfigOrExit } from '../load-config';

/** "schedule espresso-daily recreated, so nothing in it is under an older key (it held ... under k1)" */
export function describeApplied(applied: ScheduleApplied): string {
  if (applied.result !== 'recreated') return `schedule espresso-daily ${applied.result}`;
  return `schedule espresso-daily recreated, so nothing in it is under an older key (it held ${describeKeyUse(applied.replaced)})`;
}

/** `espresso schedule apply`, `espresso sync`, `espresso redispatch`. */
export function registerRunCommands(program: Command): void {
  program
    .command('schedule')
    .description('the espresso-daily Temporal schedule')
    .command('apply')
    .description(
      'create or update the schedule (daily at ESPRESSO_SCHEDULE_TIME UTC, overlapping days allowed, 1-day catch-up)',
    )
    .action(async () => {
      const config = loadConfigOrExit();
      const { client, payloadKeys, close } = await connectClient(config);
      try {
        const applied = await applySchedule(client, config.schedule, payloadKeys.current);
        await recordAudit(createStores(config.storage).blobs, {
          actor: cliActor(),
          action: 'schedule-apply',
          detail: describeApplied(applied),
          address: 'local',
        });
        console.log(
          `${describeApplied(applied)}; next runs: ${applied.nextRuns.map((d) => d.toISOString()).join(', ')}`,
        );
      } finally {
        await close();
      }
    });

  program
    .command('sync <configurationId>')
    .description('run one configuration now (maintenance, export, dispatch, summary)')
    .option('--full', 'list every contact, not only those without a value')
    .option('--dry-run', 'export and report what would be written; write nothing to the ESP')
    .option(
      '--replace-foreign-values',
      'with --full: give new values to contacts holding a value espresso would not write (kept otherwise)',
    )
    .option(
      '--date <YYYY-MM-DD>',
      'run date (default: today, UTC); a rerun of a date reuses its exported chunks',
    )
    .option('--no-wait', 'start the run and return')
    .action(
      async (
        configurationId: string,
        opts: {
          full?: boolean;
          dryRun?: boolean;
          replaceForeignValues?: boolean;
          date?: string;
          wait: boolean;
        },
      ) => {
        const config = loadConfigOrExit();
        const runDate = opts.date ?? today();
        checkIds(configurationId, runDate);
        if (opts.replaceForeignValues && !opts.full)
          throw new Error('--replace-foreign-values needs --full (only a full listing sees the values)');
        await startRun(config, createStores(config.storage), configurationId, runDate, opts.wait, {
          mode: opts.full ? 'full' : 'incremental',
          dryRun: !!opts.dryRun,
          replaceForeignValues: !!opts.replaceForeignValues,
          kind: opts.dryRun ? 'dry-run' : 'manual',
        });
      },
    );

  program
    .command('redispatch <configurationId> <run>')
    .description(
      "write an earlier run's values again (after an ESP outage) to its contacts that were not updated and still have no value",
    )
    .option('--no-wait', 'start the run and return')
    .action(async (configurationId: string, run: string, opts: { wait: boolean }) => {
      const config = loadConfigOrExit();
      const folder = runFolderSchema.safeParse(run);
      if (!folder.success) throw new Error(`run ${run}: ${folder.error.issues[0]!.message}`);
      checkIds(configurationId, run.slice(0, 10));
      const stores = createStores(config.storage);
      await existing(stores, configurationId);
      await checkRedispatchable(stores.blobs, configurationId, run);
      // A run of its own (today, its own folder) that writes the earlier run's values.
      await startRun(config, stores, configurationId, today(), opts.wait, {
        mode: 'incremental',
        dryRun: false,
        kind: 'redispatch',
        retryOf: run,
      });
    });
}

async function existing(stores: Stores, configurationId: string): Promise<void> {
  try {
    await stores.configurations.get(configurationId);
  } catch (err) {
    if (err instanceof NotFoundError) throw new Error(`no configuration ${configurationId}`);
    throw err;
  }
}

function checkIds(configurationId: string, runDate: string): void {
  const id = configurationIdSchema.safeParse(configurationId);
  if (!id.success) throw new Error(`configuration id ${configurationId}: ${id.error.issues[0]!.message}`);
  const date = runDateSchema.safeParse(runDate);
  if (!date.success) throw new Error(`run date ${runDate}: ${date.error.issues[0]!.message}`);
}

const AUDITED_KIND = { manual: 'run', 'dry-run': 'dry-run', redispatch: 'retry' } as const;

/** Starts a run of an existing configuration (ids already checked) and, with `wait`, reports it. */
async function startRun(
  config: AppConfig,
  stores: Stores,
  configurationId: string,
  runDate: string,
  wait: boolean,
  opts: {
    mode: 'incremental' | 'full';
    dryRun: boolean;
    replaceForeignValues?: boolean;
    kind: 'manual' | 'dry-run' | 'redispatch';
    retryOf?: string;
  },
): Promise<void> {
  await existing(stores, configurationId);
  const { client, close } = await connectClient(config, stores.secrets);
  try {
    const handle = await startConfigurationRun(
      client,
      stores,
      {
        configurationId,
        runDate,
        mode: opts.mode,
        dryRun: opts.dryRun,
        retryOf: opts.retryOf,
        ...(opts.replaceForeignValues ? { replaceForeignValues: true } : {}),
      },
      opts.kind,
    );
    const workflowId = handle.workflowId;
    await recordAudit(stores.blobs, {
      actor: cliActor(),
      action: AUDITED_KIND[opts.kind],
      configurationId,
      detail: opts.retryOf ? `failed rows of run ${opts.retryOf}: ${workflowId}` : workflowId,
      address: 'local',
    });
    console.log(`started ${workflowId}\n  ${workflowUrl(config, workflowId)}`);
    if (!wait) return;
    const result = (await handle.result()) as ConfigurationSyncResult;
    console.log(
      `${result.status}: exported ${result.exported}, updated ${result.updated}, rejected ${result.rejected}` +
        (result.reason ? ` (${result.reason})` : ''),
    );
    for (const note of result.notes ?? []) console.log(`  ${note}`);
    if (result.status !== 'completed') process.exitCode = 1;
  } finally {
    await close();
  }
}
