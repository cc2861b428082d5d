// Records the histories test/replay.test.ts replays: `npm run record-histories`. Re-record when a
// workflow change is intended; use patched() when running workflows must stay compatible.
import { execFileSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { projectRoot } from '../../src/paths';
import { resolveTemporalCli } from '../../src/tools';
import { configurationSyncWorkflow, dailySyncWorkflow } from '../../src/workflows';
import { startEspresso } from '../support/espresso';
import { stopTemporalEnv } from '../support/temporal';

async function main(): Promise<void> {
  Runtime.install({ logger: new DefaultLogger('ERROR') });
  const e = await startEspresso();
  const dir = join(projectRoot, 'test', 'histories');
  const cli = resolveTemporalCli();
  if (cli.source === 'sdk-download') throw new Error('recording needs the temporal CLI: run `npm run bootstrap`');
  // The CLI writes histories in the JSON form the Web UI downloads and replay reads.
  const ids: Record<string, string> = {};
  const save = async (name: string, workflowId: string) => {
    ids[`${name}.json`] = workflowId;
    const json = execFileSync(cli.path, ['workflow', 'show', '--workflow-id', workflowId, '--output', 'json', '--address', e.env.address], {
      encoding: 'utf8',
    });
    await writeFile(join(dir, `${name}.json`), json);
    console.log(`recorded ${name}.json (${JSON.parse(json).events.length} events)`);
  };
  try {
    const { configuration, list } = await e.connect(25_000);
    list.suppressed.add(3);
    const id = `sync/${configuration.id}/2026-11-01`;
    await e.client.workflow.execute(configurationSyncWorkflow, {
      taskQueue: e.taskQueue,
      workflowId: id,
      args: [{ configurationId: configuration.id, runDate: '2026-11-01', mode: 'incremental' }],
    });
    await save('configuration-sync-completed', id);
    await save('dispatch', `${id}/dispatch`);

    const broken = await e.connect(10);
    await e.stores.secrets.put(broken.configuration.credentialsSecretId, JSON.stringify({ kind: 'apiKey', apiKey: 'revoked-key' }));
    const reauth = `sync/${broken.configuration.id}/2026-11-01`;
    await e.client.workflow.execute(configurationSyncWorkflow, {
      taskQueue: e.taskQueue,
      workflowId: reauth,
      args: [{ configurationId: broken.configuration.id, runDate: '2026-11-01', mode: 'incremental' }],
    });
    await save('configuration-sync-needs-reauth', reauth);

    await e.client.workflow.execute(dailySyncWorkflow, {
      taskQueue: e.taskQueue,
      workflowId: 'daily/2026-11-02',
      args: [{ runDate: '2026-11-02' }],
    });
    await save('daily-sync', 'daily/2026-11-02');
    // Replay needs each history's workflow id (child workflow ids derive from it).
    await writeFile(join(dir, 'workflow-ids.json'), JSON.stringify(ids, null, 2) + '\n');
  } finally {
    await e.stop();
    await stopTemporalEnv();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
