#!/usr/bin/env node
import { Command } from 'commander';
import { registerConfigurationCommands } from './configurations';
import { doctor } from './doctor';
import { registerRunCommands } from './runs';
import { registerSandboxCommands } from './sandbox';
import { start } from './start';

const program = new Command()
  .name('espresso')
  .description('Keeps a stable random ID (lcee) in every connected ESP account, daily, on Temporal.')
  .showHelpAfterError();

program
  .command('start')
  .description('start and supervise the embedded stack: Temporal dev server, worker, web server')
  .action(start);

program
  .command('doctor')
  .description('check every dependency and say what is wrong, one line each')
  .action(async () => {
    process.exitCode = (await doctor()) ? 0 : 1;
  });

registerConfigurationCommands(program);
registerRunCommands(program);
registerSandboxCommands(program);

program.parseAsync().catch((err) => {
  console.error(`espresso: ${(err as Error).message}`);
  process.exit(1);
});
