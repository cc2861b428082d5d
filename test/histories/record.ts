// Records the histories of this version that test/replay.test.ts replays, one per way a run ends:
// `npm run record-histories` (writes test/histories/current/). Histories of earlier versions in
// test/histories/legacy/ are never re-recorded: they stand for runs in flight during an upgrade.
import { execFileSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { WorkflowHandle } from '@temporalio/client';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { projectRoot } from '../../src/paths';
import { resolveTemporalCli } from '../../src/tools';
import { configurationSyncWorkflow, dailySyncWorkflow } from '../../src/workflows';
import { progressQuery, type ConfigurationSyncInput } from '../../src/workflows/configuration-sync';
import { startEspresso } from '../support/espresso';
import { stopTemporalEnv } from '../support/temporal';

async function main(): Promise<void> {
  Runtime.install({ logger: new DefaultLogger('ERROR') });
  const e = await startEspresso();
  const dir = join(projectRoot, 'test', 'histories', 'current');
  const cli = resolveTemporalCli();
  if (cli.source === 'sdk-download') throw new Error('recording needs the temporal CLI: run `npm run bootstrap`');
  const ids: Record<string, string> = {};
  // The CLI writes histories in the JSON form the Web UI downloads and replay reads. A workflow
  // that continued as new has several runs: its first, or (`last`) the one that ended it.
  const save = async (
    name: string,
    handle: WorkflowHandle & { firstExecutionRunId?: string },
    run: 'first' | 'last' = 'first',
  ) => {
    await handle.result().catch(() => undefined);
    const file = `${name}.json`;
    ids[file] = handle.workflowId;
    const runId =
      run === 'first' ? handle.firstExecutionRunId! : (await e.client.workflow.getHandle(handle.workflowId).describe()).runId;
    const json = execFileSync(
      cli.path,
      ['workflow', 'show', '--workflow-id', handle.workflowId, '--run-id', runId, '--output', 'json', '--address', e.env.address],
      { encoding: 'utf8' },
    );
    await writeFile(join(dir, file), json);
    console.log(`recorded ${file} (${JSON.parse(json).events.length} events)`);
  };
  const start = (input: ConfigurationSyncInput, suffix = '') =>
    e.client.workflow.start(configurationSyncWorkflow, {
      taskQueue: e.taskQueue,
      workflowId: `sync/${input.configurationId}/${input.runDate}${suffix}`,
      args: [input],
    });
  const day = '2026-12-01';
  try {
    const completed = await e.connect(25_000);
    completed.list.suppressed.add(3);
    await save('configuration-sync-completed', await start({ configurationId: completed.configuration.id, runDate: day, mode: 'incremental' }));

    const continued = await e.connect(100_000);
    const continuing = await start({ configurationId: continued.configuration.id, runDate: day, mode: 'incremental', maxHistoryEvents: 20 });
    await save('configuration-sync-continued', continuing);
    // The run a continue-as-new started, from the state carried over, to the end.
    await save('configuration-sync-resumed', continuing, 'last');

    const revoked = await e.connect(10);
    await e.stores.secrets.put(revoked.configuration.credentialsSecretId, JSON.stringify({ kind: 'apiKey', apiKey: 'revoked-key' }));
    await save('configuration-sync-needs-reauth', await start({ configurationId: revoked.configuration.id, runDate: day, mode: 'incremental' }));

    const disabled = await e.connect(10, { status: 'disabled' });
    await save('configuration-sync-skipped', await start({ configurationId: disabled.configuration.id, runDate: day, mode: 'incremental' }));

    const gone = await e.connect(10, { espListId: 'list_gone' });
    await save('configuration-sync-failed', await start({ configurationId: gone.configuration.id, runDate: day, mode: 'incremental' }));

    // Slow ESP answers keep these runs going long enough to be overlapped, cancelled, timed out.
    const slow = await e.connect(20_000);
    slow.account.settings.faults.latencyMs = 100;
    const writing = await start({ configurationId: slow.configuration.id, runDate: day, folderSuffix: 'manual-1', mode: 'incremental' }, '/manual-1');
    await sleep(1_000);
    await save('configuration-sync-busy', await start({ configurationId: slow.configuration.id, runDate: day, mode: 'incremental' }));
    await writing.cancel();
    await save('configuration-sync-cancelled', writing);
    await save(
      'configuration-sync-timed-out',
      await start({ configurationId: slow.configuration.id, runDate: '2026-12-02', mode: 'incremental', deadlineMs: 2_000 }),
    );
    // Disabled while it writes (its ESP slowed down so that the writes outlast the next status
    // check): the run stops and ends cancelled, and completes (nothing to retry).
    const stopped = await e.connect(20_000);
    const stopping = await start({ configurationId: stopped.configuration.id, runDate: day, mode: 'incremental' });
    while ((await stopping.query(progressQuery)).phase !== 'dispatch') await sleep(100);
    stopped.account.settings.faults.latencyMs = 2_000;
    await e.stores.configurations.update(stopped.configuration.id, () => ({ status: 'disabled' }));
    await save('configuration-sync-disabled', stopping);

    // Two configurations of one ESP account: the second waits, is lent what the first's last chunks
    // held as they end (it lists on it), and is told when the first is done.
    const holder = await e.connect(20_000, {}, { account: 'acct_shared' });
    const waiter = await e.connect(5_000, {}, { account: 'acct_shared' });
    holder.account.settings.faults.latencyMs = 50;
    const holding = await start({ configurationId: holder.configuration.id, runDate: day, mode: 'incremental' });
    await sleep(200);
    await save('configuration-sync-waited', await start({ configurationId: waiter.configuration.id, runDate: day, mode: 'incremental' }));
    await save('configuration-sync-told-waiter', holding);

    for (let i = 0; i < 4; i++) await e.connect(10);
    const daily = await e.client.workflow.start(dailySyncWorkflow, {
      taskQueue: e.taskQueue,
      workflowId: 'daily/2026-12-03',
      args: [{ runDate: '2026-12-03', pageSize: 2, concurrency: 2, maxHistoryEvents: 100 }],
    });
    await save('daily-sync-continued', daily);
    await save('daily-sync-resumed', daily, 'last');
    // Replay needs each history's workflow id (child workflow ids derive from it).
    await writeFile(join(dir, 'workflow-ids.json'), JSON.stringify(ids, null, 2) + '\n');
  } finally {
    try {
      await e.stop();
    } finally {
      await stopTemporalEnv();
    }
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
