// The rejected-share alert (ESPRESSO_ALERT_REJECTED_PERCENT) as recordRun decides it, on real local
// stores: once when a run's rejected share passes the threshold, once when a later run is back
// under it, saved with the change like every other alert.
import { strict as assert } from 'node:assert';
import { MockActivityEnvironment } from '@temporalio/testing';
import { createActivities } from '../../src/activities';
import type { RunSummary } from '../../src/runs/summaries';
import type { Alert } from '../../src/alerts';
import { ConfigError, loadConfig } from '../../src/config';
import { createDeps } from '../../src/deps';
import { createLogger } from '../../src/logger';
import { ProcessorRegistry } from '../../src/processors/registry';
import { summaryFor } from '../support/run-summaries';
import { tempDir, tempStores } from '../support/tmp';

describe('the rejected-share alert', () => {
  it('alerts once when a run rejects more than the threshold, and once when a later run is back under it', async () => {
    const stores = await tempStores();
    const sent: Alert[] = [];
    const activities = createActivities({
      stores,
      processors: new ProcessorRegistry([]),
      alerts: async (a) => void sent.push(a),
      alertRejectedPercent: 50,
    });
    const c = await stores.configurations.create({
      esp: 'sandbox',
      accountLabel: 'Rejections',
      espAccountId: 'acct_rejections',
      fieldName: 'lcee',
      status: 'active',
      maintenance: true,
    });
    let day = 0;
    const record = async (
      contacts: { updated: number; rejected: number },
      extra: Partial<RunSummary> = {},
    ) => {
      const run = `2026-12-${String(++day).padStart(2, '0')}`;
      await new MockActivityEnvironment().run(
        activities.recordRun,
        summaryFor(c.id, run, `${run}T06:00:00.000Z`, {
          contacts: { exported: contacts.updated + contacts.rejected, alreadySet: 0, ...contacts },
          rejectedByKind: contacts.rejected
            ? { contact_suppressed: contacts.rejected - 1, invalid_value: 1 }
            : {},
          ...extra,
        }),
      );
      return sent.splice(0).map((a) => `${a.status}: ${a.message}`);
    };

    assert.deepEqual(await record({ updated: 6, rejected: 4 }), [], '40% is not above 50%');
    assert.deepEqual(await record({ updated: 5, rejected: 5 }), [], '50% is not above 50%');
    assert.deepEqual(await record({ updated: 4, rejected: 6 }), [
      'rejections_high: run 2026-12-03: 6 of 10 contacts rejected (60%), above 50%: contact_suppressed 5, invalid_value 1',
    ]);
    assert.deepEqual(await record({ updated: 0, rejected: 9 }), [], 'still above: no second alert');
    assert.deepEqual(await record({ updated: 0, rejected: 0 }), [], 'a run that wrote nothing says nothing');
    assert.deepEqual(
      await record({ updated: 0, rejected: 10 }, { dryRun: true }),
      [],
      'a dry run says nothing',
    );
    assert.deepEqual(
      await record({ updated: 1, rejected: 0 }, { status: 'failed', reason: 'the ESP answered 503' }),
      ['run_failed: run 2026-12-07 failed: the ESP answered 503'],
      'a failed run alerts as failed, and does not recover the rejections',
    );
    // Runs work again and the rejections are back under the threshold: both recoveries, once each.
    assert.deepEqual(await record({ updated: 9, rejected: 1 }), [
      'run_recovered: run 2026-12-08 completed; runs work again',
      'rejections_recovered: run 2026-12-08: 1 of 10 contacts rejected (10%), back under 50%',
    ]);
    assert.deepEqual(await record({ updated: 10, rejected: 0 }), []);
    const stored = await stores.configurations.get(c.id);
    assert.equal(stored.rejections, 'ok');
    assert.equal(stored.alertOutbox, undefined, 'nothing left to send');
  });

  it('takes its threshold from ESPRESSO_ALERT_REJECTED_PERCENT (default 10), and names the variable when it is wrong', async () => {
    const dataDir = await tempDir();
    const log = createLogger('test', 'silent');
    assert.equal(createDeps(loadConfig({ ESPRESSO_DATA_DIR: dataDir }), log).alertRejectedPercent, 10);
    const set = loadConfig({ ESPRESSO_DATA_DIR: dataDir, ESPRESSO_ALERT_REJECTED_PERCENT: '2.5' });
    assert.equal(createDeps(set, log).alertRejectedPercent, 2.5);
    assert.equal(loadConfig({ ESPRESSO_ALERT_REJECTED_PERCENT: '0' }).alertRejectedPercent, 0);
    for (const wrong of ['ten', '-5', '101', '10%'])
      assert.throws(
        () => loadConfig({ ESPRESSO_ALERT_REJECTED_PERCENT: wrong }),
        (err: unknown) =>
          err instanceof ConfigError &&
          /ESPRESSO_ALERT_REJECTED_PERCENT: expected a percentage from 0 to 100, e\.g\. 10/.test(err.message),
        wrong,
      );
  });
});
