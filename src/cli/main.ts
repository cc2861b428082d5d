#!/usr/bin/env node
import { Command } from 'commander';
import { codecEndpoint } from '../codec';
import { readKeyFile } from '../lib/key-file';
import { registerAuditCommand } from './audit';
import { registerConfigurationCommands } from './configurations';
import { doctor } from './doctor';
import { registerKeyCommands } from './keys';
import { loadConfigOrExit } from '../load-config';
import { registerRunHistoryCommands } from './run-history';
import { registerRunCommands } from './runs';
import { positiveInt, registerSandboxCommands } from './sandbox';
import { start } from './start';
import { cluster, CLUSTER_DEFAULTS } from '../cluster';
import { keepFilesPrivate } from '../lib/private-files';

keepFilesPrivate();

const program = new Command()
  .name('espresso')
  .description('Keeps a stable random ID (lcee) in every connected ESP account, daily, on Temporal.')
  .showHelpAfterError();

program
  .command('start')
  .description('start and supervise the embedded stack: Temporal dev server, worker, web server')
  .action(start);

program
  .command('cluster')
  .description(
    'start and supervise the production topology: PostgreSQL, a Temporal server on it, moto (S3 + Secrets Manager), workers, web',
  )
  .option('--workers <n>', 'worker processes', (v) => positiveInt(v, '--workers'), CLUSTER_DEFAULTS.workers)
  .option(
    '--postgres-port <port>',
    'PostgreSQL port on 127.0.0.1',
    (v) => positiveInt(v, '--postgres-port'),
    CLUSTER_DEFAULTS.postgresPort,
  )
  .option(
    '--moto-port <port>',
    'S3 + Secrets Manager emulator port on 127.0.0.1',
    (v) => positiveInt(v, '--moto-port'),
    CLUSTER_DEFAULTS.motoPort,
  )
  .action(cluster);

program
  .command('doctor')
  .description('check every dependency and say what is wrong, one line each')
  .action(async () => {
    process.exitCode = (await doctor()) ? 0 : 1;
  });

program
  .command('codec-endpoint')
  .description(
    'print the codec server URL for `temporal ... --codec-endpoint` (decrypts payloads; keep it private)',
  )
  .action(async () => {
    const config = loadConfigOrExit();
    // The web server's secret, never a new one: a URL it would refuse is worse than none.
    const secret = config.web.sessionSecret ?? (await readKeyFile(config.web.sessionSecretFile));
    if (!secret) {
      throw new Error(
        `no session secret yet (${config.web.sessionSecretFile} is created at the web server's first start; or set ESPRESSO_SESSION_SECRET like the web server's)`,
      );
    }
    console.log(codecEndpoint(config.web.publicUrl, secret));
  });

registerConfigurationCommands(program);
registerRunCommands(program);
registerRunHistoryCommands(program);
registerAuditCommand(program);
registerSandboxCommands(program);
registerKeyCommands(program);

program.parseAsync().catch((err) => {
  console.error(`espresso: ${(err as Error).message}`);
  process.exit(1);
});
