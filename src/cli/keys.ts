import type { Command } from 'commander';
import { createStores } from '../storage';
import { keyName, LocalSecretStore, type SecretKeyUsage } from '../storage/local-secret-store';
import { loadConfigOrExit } from './load-config';

export const REKEY_SECRETS_COMMAND = 'npm run espresso -- keys rekey-secrets';

/** `espresso keys ...`: encryption keys. */
export function registerKeyCommands(program: Command): void {
  const keys = program.command('keys').description('encryption keys');

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
