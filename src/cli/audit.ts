// `espresso audit`: the audit log (src/audit/log.ts), newest first, as /admin/audit shows it.
import type { Command } from 'commander';
import { auditCursorPattern, auditPage } from '../audit/log';
import { createStores } from '../storage';
import { loadConfigOrExit } from '../load-config';

function pageLimit(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 1_000)
    throw new Error(`--limit: ${value} is not a number from 1 to 1000`);
  return n;
}

async function printAudit(opts: { json?: boolean; limit: number; after?: string }): Promise<void> {
  if (opts.after && !auditCursorPattern.test(opts.after))
    throw new Error(`--after: ${JSON.stringify(opts.after)} is not a page of the audit log`);
  const { blobs } = createStores(loadConfigOrExit().storage);
  const { entries, next } = await auditPage(blobs, { after: opts.after, limit: opts.limit });
  const more = next ? `more: espresso audit --after ${next}` : '';
  if (opts.json) {
    console.log(JSON.stringify(entries, null, 2));
    if (more) console.error(more);
    return;
  }
  if (entries.length === 0 && !opts.after) return void console.log('no action recorded yet');
  for (const e of entries)
    console.log(
      `${e.at}  ${e.actor}  ${e.action}${e.configurationId ? `  ${e.configurationId}` : ''}${e.detail ? `  (${e.detail})` : ''}  from ${e.address}`,
    );
  if (more) console.log(more);
}

export function registerAuditCommand(program: Command): void {
  program
    .command('audit')
    .description(
      'who did what, when and from where (connect, re-authorize, disconnect, revoke-link, disable, enable, run, dry run, retry, schedule apply), newest first',
    )
    .option('--json', 'print JSON (an array of {at, actor, action, configurationId?, detail?, address})')
    .option('--limit <n>', 'entries per page (1-1000)', pageLimit, 50)
    .option('--after <cursor>', 'the page after this one (printed at the end of a page)')
    .action(printAudit);
}
