import { strict as assert } from 'node:assert';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { projectRoot } from '../src/paths';
import { importCycles } from './support/import-cycles';
import { tempDir } from './support/tmp';

describe('import cycles', () => {
  it('finds none under src/ (type-only imports count, as madge counts them)', async () => {
    const cycles = await importCycles(join(projectRoot, 'src'));
    assert.deepEqual(
      cycles.map((c) => c.join(' > ')),
      [],
      'each line is a cycle: a file importing, directly or not, a file that imports it',
    );
  });

  it('names the files of a cycle, through an index, a type-only import and a re-export', async () => {
    const dir = await tempDir();
    await mkdir(join(dir, 'a'));
    await writeFile(join(dir, 'a/index.ts'), "export { b } from './b';\n");
    await writeFile(
      join(dir, 'a/b.ts'),
      "import type { C } from '../c';\nexport const b = 1 as unknown as C;\n",
    );
    await writeFile(join(dir, 'c.ts'), "import { b } from './a';\nexport type C = typeof b;\n");
    await writeFile(join(dir, 'd.ts'), "import { b } from './a';\nimport { readFile } from 'node:fs';\n");
    assert.deepEqual(await importCycles(dir), [['a/b.ts', 'c.ts', 'a/index.ts']]);
  });
});
