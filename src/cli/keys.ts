import type { Command } from 'commander';
import { loadPayloadKeys, payloadKeysSource, savePayloadKeys, type PayloadKeys } from '../codec';
import {
  assertKnown,
  describeRing,
  orderedIds,
  withCurrentKey,
  withNewKey,
  withoutKey,
} from '../codec/ring-edits';
import type { AppConfig } from '../config';
import { createStores, type SecretStore } from '../storage';
import { keyName, LocalSecretStore, type SecretKeyUsage } from '../storage/local-secret-store';
import { connectClient } from '../temporal/client';
import {
  closedHistories,
  describeScheduleRaw,
  openRunsUnderKey,
  scheduleKeyUse,
} from '../temporal/payload-key-use';
import { applySchedule } from '../temporal/schedule';
import { loadConfigOrExit } from '../load-config';
import { describeApplied } from './runs';

export const REKEY_SECRETS_COMMAND = 'npm run espresso -- keys rekey-secrets';
const RESTART = 'restart every worker and web server (`npm start` restarts them all)';

/** `espresso keys ...`: encryption keys. */
export function registerKeyCommands(program: Command): void {
  const keys = program
    .command('keys')
    .description('encryption keys: the Temporal payload key ring, and the local secret store key');

  keys
    .command('list')
    .description('the payload keys: their ids, which one encrypts, where the ring comes from (never a key)')
    .action(async () => {
      const { ring, source } = await payloadRing();
      console.log(`payload keys from ${source}:`);
      for (const id of orderedIds(ring)) {
        console.log(`  ${id}  ${id === ring.current ? 'current: encrypts new payloads' : 'decrypts only'}`);
      }
    });

  keys
    .command('add')
    .description('add a new random payload key at the end of the ring, not current yet')
    .option('--id <id>', 'its id, never one a retired key had (default k<YYYYMMDD>-<HHMMSS>, UTC)')
    .action(async (opts: { id?: string }) => {
      const { config, secrets, ring, source } = await payloadRing();
      if (config.payloadKeys) {
        throw new Error(
          `${source} holds the ring, and this command does not edit the environment: generate a key (\`openssl rand -base64 32\`), append \`,<new id>:<key>\` to ESPRESSO_PAYLOAD_KEYS wherever it is set, and ${RESTART}`,
        );
      }
      const added = withNewKey(ring, opts.id);
      await savePayloadKeys(secrets, added.ring);
      console.log(`added payload key ${added.id} to ${source}; ${ring.current} stays current`);
      console.log(
        `next: ${RESTART}, so all of them can decrypt ${added.id}; then \`npm run espresso -- keys use ${added.id}\``,
      );
    });

  keys
    .command('use <id>')
    .description(
      'make a payload key current (every process must have it: `keys add`, then a restart), and re-encrypt the schedule with it',
    )
    .action(async (id: string) => {
      const { config, secrets, ring, source } = await payloadRing();
      assertKnown(ring, id);
      if (config.payloadKeys) {
        throw new Error(
          `${source} holds the ring, and this command does not edit the environment: move ${id}'s entry first in ESPRESSO_PAYLOAD_KEYS wherever it is set, ${RESTART}, then run \`npm run espresso -- schedule apply\``,
        );
      }
      if (ring.current === id) console.log(`${id} is the current payload key already (${source})`);
      else {
        await savePayloadKeys(secrets, withCurrentKey(ring, id));
        console.log(`${id} is now the current payload key (${source})`);
      }
      const { client, payloadKeys, close } = await connectClient(config, secrets);
      try {
        console.log(describeApplied(await applySchedule(client, config.schedule, payloadKeys.current)));
      } finally {
        await close();
      }
      console.log(
        `next: ${RESTART}: until then they encrypt with the key that was current at their start; then run \`npm run espresso -- schedule apply\``,
      );
    });

  keys
    .command('retire <id>')
    .description(
      'drop a payload key once nothing needs it: the schedule, open runs, closed histories still kept (--force skips the last)',
    )
    .option(
      '--force',
      'retire it although closed workflow histories may be encrypted with it (once retention has removed them)',
    )
    .action(async (id: string, opts: { force?: boolean }) => {
      const { config, secrets, ring, source } = await payloadRing();
      const without = withoutKey(ring, id);
      const needs = await whatNeeds(config, secrets, id, !!opts.force);
      if (opts.force) console.log(`--force: closed workflow histories were not checked for ${id}`);
      if (needs.length > 0) {
        console.log(`${id} is still needed:`);
        for (const need of needs) console.log(`  - ${need}`);
        process.exitCode = 1;
        return;
      }
      if (config.payloadKeys) {
        console.log(
          `nothing checked needs ${id}: remove its entry from ESPRESSO_PAYLOAD_KEYS wherever it is set, then ${RESTART}`,
        );
        return;
      }
      await savePayloadKeys(secrets, without);
      console.log(`retired payload key ${id}: ${source} now holds ${describeRing(without)}`);
      console.log(`next: ${RESTART}: until then they still hold ${id}`);
    });

  keys
    .command('rekey-secrets')
    .description(
      'after a rotation of ESPRESSO_SECRET_KEY: re-encrypt every local secret with its first key (safe to re-run)',
    )
    .action(async () => {
      const secrets = localSecretStore();
      const { reencrypted, failed } = await secrets.rekey();
      for (const { id, reason } of failed) console.log(`could not re-encrypt ${id}: ${reason}`);
      if (failed.length > 0) process.exitCode = 1;
      const usage = await secrets.keyUsage();
      console.log(
        `re-encrypted ${reencrypted} secret file(s) with ${keyName(usage.current)}, the current key of ${usage.source}`,
      );
      if (usage.older.size > 0) {
        console.log(`${describeOlderKeys(usage)}: keep the older keys in ${usage.source}`);
        process.exitCode = 1;
      } else if (usage.others.length > 0) {
        console.log(
          `no older key is needed any more: ${usage.others.join(', ')} can be removed from ${usage.source}`,
        );
      } else {
        console.log('no older key is needed');
      }
    });
}

/**
 * What Temporal still holds under payload key `id`, one sentence each: the schedule's stored
 * payloads, open runs started under it, and (unless `force`) closed histories the namespace keeps.
 */
async function whatNeeds(config: AppConfig, secrets: SecretStore, id: string, force: boolean) {
  const { client, close } = await connectClient(config, secrets);
  try {
    const needs: string[] = [];
    const schedule = await describeScheduleRaw(client);
    const held = schedule ? (await scheduleKeyUse(client, schedule)).filter((u) => u.keyId === id) : [];
    if (held.length > 0) {
      needs.push(
        `${held.map((u) => u.what).join(' and ')}: run \`npm run espresso -- schedule apply\` (it re-encrypts the schedule, or recreates it)`,
      );
    }
    const open = await openRunsUnderKey(client, id);
    if (open.count > 0) {
      needs.push(
        `${open.count} open workflow run(s) started under ${id} (${open.examples.join(', ')}${open.count > open.examples.length ? ', ...' : ''}): let them end, or terminate them`,
      );
    }
    const closed = force ? { count: 0, retentionDays: 0 } : await closedHistories(client);
    if (closed.count > 0) {
      needs.push(
        `${closed.count} closed workflow histories are still kept (namespace ${config.temporal.namespace} keeps each ${closed.retentionDays} day(s) after it closes); those written while ${id} was current can be read only with it (Web UI, \`temporal workflow show\`, replays). Once retention has removed them (${closed.retentionDays} day(s) after the last run under ${id} closed), run this again with --force`,
      );
    }
    return needs;
  } finally {
    await close();
  }
}

async function payloadRing(): Promise<{
  config: AppConfig;
  secrets: SecretStore;
  ring: PayloadKeys;
  source: string;
}> {
  const config = loadConfigOrExit();
  const { secrets } = createStores(config.storage);
  const ring = await loadPayloadKeys(config.payloadKeys, secrets);
  return { config, secrets, ring, source: payloadKeysSource(config.payloadKeys, secrets) };
}

/** "3 secret file(s) still encrypted with an older key (key a: 2, the unnamed key: 1)" */
export function describeOlderKeys(usage: SecretKeyUsage): string {
  const counts = [...usage.older.values()].reduce((a, b) => a + b, 0);
  const byKey = [...usage.older].map(([id, n]) => `${keyName(id)}: ${n}`).join(', ');
  return `${counts} secret file(s) still encrypted with an older key (${byKey})`;
}

function localSecretStore(): LocalSecretStore {
  const config = loadConfigOrExit();
  const { secrets } = createStores(config.storage);
  if (!(secrets instanceof LocalSecretStore)) {
    throw new Error(
      'only the local secret store (ESPRESSO_STORAGE=local) has a key ring; Secrets Manager keys are rotated in AWS',
    );
  }
  return secrets;
}
