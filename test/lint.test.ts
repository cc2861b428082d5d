import { strict as assert } from 'node:assert';
import { join } from 'node:path';
import { ESLint } from 'eslint';
import { projectRoot } from '../src/paths';

/** The problems ESLint (eslint.config.mjs) finds in `code` as if it were the file at `path`. */
async function lint(path: string, code: string): Promise<string[]> {
  const [result] = await new ESLint({ cwd: projectRoot }).lintText(code, {
    filePath: join(projectRoot, path),
  });
  return result!.messages.map((m) => `${m.line} ${m.ruleId}`);
}

describe('lint rules (eslint.config.mjs)', function () {
  this.timeout(180_000);

  it('refuses a Node built-in or a value from a module that is not workflow code in a workflow file', async () => {
    const problems = await lint(
      'src/workflows/sync/end.ts',
      [
        "import { randomUUID } from 'node:crypto';",
        "import { readFileSync } from 'fs';",
        "import axios from 'axios';",
        "import { loadTarget } from '../../activities/deps';",
        "export { createStores } from '../../storage';",
        "import type { Activities } from '../../activities';",
        "import { type ActivityDeps } from '../../activities/deps';",
        "import { proxyActivities } from '@temporalio/workflow';",
        "import { searchAttributes } from '../../temporal/constants';",
        "import { runFolder } from '../configuration-run';",
        'export const used = [randomUUID, readFileSync, axios, loadTarget, proxyActivities, searchAttributes, runFolder];',
        'export type Used = [Activities, ActivityDeps];',
      ].join('\n'),
    );
    assert.deepEqual(
      problems,
      [1, 2, 3, 4, 5].map((line) => `${line} espresso/workflow-imports`),
    );
  });

  it('holds the modules workflow code may import to the same rule', async () => {
    assert.deepEqual(await lint('src/runs/report.ts', "export { readFile } from 'node:fs/promises';\n"), [
      '1 espresso/workflow-imports',
    ]);
  });

  it('refuses a promise nobody awaits, anywhere in the code', async () => {
    const code = [
      'async function save(): Promise<void> {}',
      'export function handler(): void {',
      '  save();',
      '  void save();',
      '}',
    ].join('\n');
    assert.deepEqual(await lint('src/web/app.ts', code), ['3 @typescript-eslint/no-floating-promises']);
  });
});
