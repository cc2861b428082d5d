// The audit log: newest first, paged, nothing from outside unsanitized; and `espresso audit` as typed.
import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { adminActor, auditPage, recordAudit, type AuditEntry } from '../src/audit/log';
import { projectRoot } from '../src/paths';
import { tempStores } from './support/tmp';

const run = promisify(execFile);

describe('audit log', function () {
  this.timeout(60_000);

  it('pages entries newest first, emails and secrets taken out', async () => {
    const { blobs } = await tempStores();
    const at = (minute: number) => new Date(Date.UTC(2026, 11, 4, 10, minute));
    await recordAudit(
      blobs,
      { actor: 'operator ops', action: 'disable', configurationId: 'cfg_a0000000', address: '10.0.0.1' },
      at(1),
    );
    await recordAudit(
      blobs,
      {
        actor: adminActor(`Basic ${Buffer.from('ann@example.com:pw').toString('base64')}`),
        action: 'run',
        address: '10.0.0.2',
      },
      at(3),
    );
    await recordAudit(
      blobs,
      {
        actor: 'cli alice',
        action: 'retry',
        detail: 'Bearer sk_live_0123456789 for bob@example.com',
        address: 'local',
      },
      at(2),
    );
    const first = await auditPage(blobs, { limit: 2 });
    assert.deepEqual(
      first.entries.map((e) => [e.at, e.actor, e.action]),
      [
        ['2026-12-04T10:03:00.000Z', 'operator [email]', 'run'],
        ['2026-12-04T10:02:00.000Z', 'cli alice', 'retry'],
      ],
    );
    assert.equal(first.entries[1]!.detail, 'Bearer [redacted] for [email]');
    const second = await auditPage(blobs, { after: first.next, limit: 2 });
    assert.deepEqual(
      second.entries.map((e) => e.action),
      ['disable'],
    );
    assert.equal(second.next, undefined);
    assert.equal(adminActor('Bearer whatever'), 'operator (admin token)');
  });

  it('`espresso configurations disable` is recorded, and `espresso audit [--json]` prints it', async () => {
    const stores = await tempStores();
    const c = await stores.configurations.create({
      esp: 'sandbox',
      accountLabel: 'Audit roasters',
      espAccountId: 'acct_audit',
      fieldName: 'lcee',
      status: 'active',
      maintenance: true,
    });
    const espresso = async (...args: string[]) =>
      (
        await run(process.execPath, [join(projectRoot, 'dist/src/cli/main.js'), ...args], {
          env: {
            ...process.env,
            ESPRESSO_DATA_DIR: dirname(stores.blobs.description.replace(/^local directory /, '')),
          },
          timeout: 30_000,
        })
      ).stdout;
    assert.equal(await espresso('audit'), 'no action recorded yet\n');
    await espresso('configurations', 'disable', c.id);
    const entries = JSON.parse(await espresso('audit', '--json')) as AuditEntry[];
    assert.equal(entries.length, 1);
    assert.match(entries[0]!.actor, /^cli \S+$/);
    assert.deepEqual(
      [entries[0]!.action, entries[0]!.configurationId, entries[0]!.address],
      ['disable', c.id, 'local'],
    );
    assert.match(await espresso('audit'), new RegExp(`^\\S+Z  cli \\S+  disable  ${c.id}  from local\\n$`));
  });
});
