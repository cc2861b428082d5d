// The README's `.env` promise as a user meets it: a `.env` file at the project root is read by
// `npm start` (espresso start) and by the CLI, and the real environment wins over it. The project
// root is where package.json is, so the test lays out one of its own (the built code and
// package.json copied, node_modules linked) and runs the CLI from there, as a checkout would.
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { cpSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadConfig } from '../src/config';
import { projectRoot } from '../src/paths';
import { createStores } from '../src/storage';
import { tempDir } from './support/tmp';

describe('a .env file at the project root', function () {
  this.timeout(60_000);
  let root: string;
  /** The environment the user's shell has: none of espresso's variables but what a test adds. */
  const shell = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith('ESPRESSO_') && !k.startsWith('TEMPORAL_')),
  );
  const espresso = (args: string[], env: NodeJS.ProcessEnv = {}) => {
    const out = spawnSync(process.execPath, [join(root, 'dist/src/cli/main.js'), ...args], {
      env: { ...shell, ...env },
      cwd: root,
      encoding: 'utf8',
      timeout: 30_000,
    });
    return { code: out.status, output: out.stdout + out.stderr };
  };

  before(async () => {
    root = await tempDir('espresso-root-');
    cpSync(join(projectRoot, 'dist/src'), join(root, 'dist/src'), { recursive: true });
    cpSync(join(projectRoot, 'package.json'), join(root, 'package.json'));
    symlinkSync(join(projectRoot, 'node_modules'), join(root, 'node_modules'));
  });

  it('gives the CLI its values: the configurations of the data directory it names', async () => {
    const dataDir = await tempDir();
    const stores = createStores(loadConfig({ ESPRESSO_DATA_DIR: dataDir }).storage);
    const configuration = await stores.configurations.create({
      esp: 'sandbox',
      accountLabel: 'From the env file',
      espAccountId: 'acct_env',
      fieldName: 'lcee',
      status: 'active',
      maintenance: true,
    });
    writeFileSync(join(root, '.env'), `ESPRESSO_DATA_DIR=${dataDir}\n`);
    const listed = espresso(['configurations', 'list']);
    assert.equal(listed.code, 0, listed.output);
    assert.match(listed.output, new RegExp(configuration.id));
    // Without the file, the CLI reads the default data directory under the root: none there.
    writeFileSync(join(root, '.env'), '');
    const without = espresso(['configurations', 'list']);
    assert.equal(without.code, 0, without.output);
    assert.doesNotMatch(without.output, new RegExp(configuration.id));
  });

  it('is checked like the environment: a bad value stops the CLI and npm start, naming the variable; the real environment wins over it', async () => {
    writeFileSync(join(root, '.env'), 'ESPRESSO_WEB_PORT=eighty\n');
    const dataDir = await tempDir();
    for (const args of [['configurations', 'list'], ['start']]) {
      const refused = espresso(args, { ESPRESSO_DATA_DIR: dataDir });
      assert.equal(refused.code, 2, `espresso ${args.join(' ')}: ${refused.output}`);
      assert.match(refused.output, /ESPRESSO_WEB_PORT/);
    }
    const won = espresso(['configurations', 'list'], {
      ESPRESSO_DATA_DIR: dataDir,
      ESPRESSO_WEB_PORT: '3999',
    });
    assert.equal(won.code, 0, won.output);
    assert.match(won.output, /no configurations yet/);
  });
});
