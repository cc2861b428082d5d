import type { Command } from 'commander';
import { sandboxAdmin, sandboxAdminToken } from '../sandbox/admin';
import { loadConfigOrExit } from '../load-config';

/** `espresso sandbox ...`: run the Sandbox ESP, and seed a running one. */
export function registerSandboxCommands(program: Command): void {
  const sandbox = program.command('sandbox').description('the Sandbox ESP (a local, test-mode ESP)');

  sandbox
    .command('start')
    .description('run the Sandbox ESP in the foreground')
    .action(async () => {
      await import('../sandbox/main');
    });

  sandbox
    .command('seed')
    .description('add contacts to a list of a running Sandbox ESP')
    .requiredOption('--contacts <n>', 'how many contacts to add', (v) => positiveInt(v, '--contacts'))
    .option('--account <id>', 'account id', 'acct_demo')
    .option('--list <id>', 'list id (created when missing)', 'list_newsletter')
    .option(
      '--url <url>',
      'Sandbox URL (default: ESPRESSO_SANDBOX_URL; admin token: ESPRESSO_SANDBOX_ADMIN_TOKEN)',
    )
    .action(async (opts: { contacts: number; account: string; list: string; url?: string }) => {
      const config = loadConfigOrExit().sandbox;
      const url = (opts.url ?? config.url).replace(/\/$/, '');
      const admin = { url, adminToken: await sandboxAdminToken(config) };
      const started = performance.now();
      let res: Response;
      try {
        res = await sandboxAdmin(
          admin,
          `/accounts/${encodeURIComponent(opts.account)}/lists/${encodeURIComponent(opts.list)}/seed`,
          {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ contacts: opts.contacts }),
          },
        );
      } catch {
        throw new Error(`the Sandbox ESP at ${url} is not reachable (is \`npm start\` running?)`);
      }
      const body = (await res.json()) as { size?: number; error?: { message: string } };
      if (!res.ok) throw new Error(`the Sandbox refused: ${body.error?.message ?? res.status}`);
      const seconds = (performance.now() - started) / 1000;
      console.log(
        `seeded ${opts.contacts} contacts into ${opts.account}/${opts.list} in ${seconds.toFixed(2)} s (list size now ${body.size})`,
      );
    });
}

export function positiveInt(value: string, flag: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1)
    throw new Error(`${flag} must be a positive whole number, got ${JSON.stringify(value)}`);
  return n;
}
