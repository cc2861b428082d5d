// An OAuth configuration through its whole life on the dev server: a proactive refresh during
// maintenance, a revoked grant (needs_reauth, one alert), skipped runs without more alerts,
// re-authorization (one recovery alert), and runs that work again.
import { strict as assert } from 'node:assert';
import { saveConnection } from '../../src/connect';
import type { Credentials } from '../../src/processors/types';
import { ProcessorRegistry } from '../../src/processors/registry';
import { runFiles } from '../../src/runs/files';
import type { RunSummary } from '../../src/runs/summaries';
import { configurationSyncWorkflow } from '../../src/workflows';
import { sandboxOAuthCredentials } from '../processors/sandbox-harness';
import { startEspresso, type Espresso } from '../support/espresso';

type OAuth = Credentials & { kind: 'oauth2' };

describe('OAuth token lifecycle of a configuration', function () {
  this.timeout(300_000);
  let e: Espresso;
  before(async () => {
    e = await startEspresso();
  });
  after(() => e?.stop());

  it('refreshes before expiry, goes to needs_reauth once when revoked, and recovers on re-authorization', async () => {
    // On the account the OAuth grant is for.
    const { configuration } = await e.connect(300, {}, { account: 'acct_demo' });
    const id = configuration.id;
    const stored = async () =>
      JSON.parse(await e.stores.secrets.get(configuration.credentialsSecretId)) as OAuth;
    const granted = (await sandboxOAuthCredentials(e.sandbox, e.processor, 'acct_demo')) as OAuth;
    // An access token that expires within the refresh margin.
    await e.stores.secrets.put(
      configuration.credentialsSecretId,
      JSON.stringify({ ...granted, issuedAt: Date.now() - 3_600_000, expiresAt: Date.now() + 5_000 }),
    );
    const run = async (runDate: string) =>
      e.client.workflow.execute(configurationSyncWorkflow, {
        taskQueue: e.taskQueue,
        workflowId: `sync/${id}/${runDate}`,
        args: [{ configurationId: id, runDate, mode: 'incremental' }],
      });
    const summary = async (runDate: string) =>
      JSON.parse((await e.stores.blobs.get(runFiles.summary(id, runDate))).body.toString()) as RunSummary;
    const alertsBefore = e.alerts.length;

    // 1. Maintenance refreshes the token before it expires; the rotated tokens are saved.
    const first = await run('2026-12-01');
    assert.deepEqual([first.status, first.updated], ['completed', 300]);
    assert.equal((await summary('2026-12-01')).maintenance?.credentials, 'refreshed');
    const refreshed = await stored();
    assert.notEqual(refreshed.accessToken, granted.accessToken);
    assert.notEqual(refreshed.refreshToken, granted.refreshToken);
    assert.ok(refreshed.expiresAt! > Date.now() + 60_000);

    // 2. The publisher revokes espresso's access: the refresh answers invalid_grant.
    e.sandbox.state.revokeGrants('acct_demo');
    await e.stores.secrets.put(
      configuration.credentialsSecretId,
      JSON.stringify({ ...refreshed, expiresAt: Date.now() - 1 }),
    );
    const revoked = await run('2026-12-02');
    assert.equal(revoked.status, 'needs_reauth');
    assert.equal((await e.stores.configurations.get(id)).status, 'needs_reauth');
    assert.deepEqual(
      e.alerts.slice(alertsBefore).map((a) => [a.configurationId, a.status]),
      [[id, 'needs_reauth']],
    );
    const alert = JSON.stringify(e.alerts.at(-1));
    assert.ok(!alert.includes(refreshed.accessToken) && !alert.includes(refreshed.refreshToken!));

    // 3. Later runs skip it and stay quiet.
    assert.equal((await run('2026-12-03')).status, 'skipped');
    assert.equal(e.alerts.length - alertsBefore, 1);

    // 4. The publisher authorizes again (the web flow's path): active, one recovery alert.
    const again = await sandboxOAuthCredentials(e.sandbox, e.processor, 'acct_demo');
    const account = { accountId: 'acct_demo', accountLabel: 'Demo Coffee Roasters', lists: [] };
    const { configuration: recovered, created } = await saveConnection(
      {
        stores: e.stores,
        processors: new ProcessorRegistry([e.processor]),
        alerts: async (a) => void e.alerts.push(a),
      },
      { esp: 'sandbox', credentials: again, account, reauthorizeId: id },
    );
    assert.equal(created, false);
    assert.equal(recovered.status, 'active');
    assert.deepEqual(
      e.alerts.slice(alertsBefore).map((a) => a.status),
      ['needs_reauth', 'active'],
    );

    // 5. And the next run works with the new grant, without another alert.
    const back = await run('2026-12-04');
    assert.equal(back.status, 'completed');
    assert.equal(e.alerts.length - alertsBefore, 2);
  });
});
