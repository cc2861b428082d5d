// The Temporal Web UI of `espresso cluster`: Temporal's UI server (its built pages are inside the Go
// module), built once from the Go module proxy into .tools/, pointed at the cluster's frontend and
// at the web server's codec route so it shows decrypted payloads.
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { say, type ProcessSpec } from '../lib/supervise';
import { projectRoot } from '../paths';
import { findGo, goInstall } from './temporal-server';

/**
 * The newest UI server release that builds with Go 1.26.8 (2.56.0 and up ask for 1.26.9 or newer);
 * docker-compose.yml's temporalio/ui image is the same release.
 */
export const TEMPORAL_UI_VERSION = '2.55.0';
const toolsDir = join(projectRoot, '.tools', `temporal-ui-${TEMPORAL_UI_VERSION}`);
export const webUiBin = join(toolsDir, 'server');

export function provisionWebUi(): void {
  if (existsSync(webUiBin)) return;
  const go = findGo();
  say(`building the Temporal Web UI server v${TEMPORAL_UI_VERSION} with ${go} into ${toolsDir} (once)`);
  goInstall(go, `github.com/temporalio/ui-server/v2/cmd/server@v${TEMPORAL_UI_VERSION}`, toolsDir);
}

/** Writes <dir>/cluster.yaml (the UI server reads `<env>.yaml` from its config folder). */
export async function writeWebUiConfig(
  dir: string,
  options: { temporalAddress: string; host: string; port: number; namespace: string; codecEndpoint: string },
): Promise<void> {
  await mkdir(dir, { recursive: true });
  const lines = [
    `# Written by \`espresso cluster\` at every start (Temporal UI server v${TEMPORAL_UI_VERSION}); edits are lost.`,
    `temporalGrpcAddress: ${JSON.stringify(options.temporalAddress)}`,
    `host: ${JSON.stringify(options.host)}`,
    `port: ${options.port}`,
    'enableUi: true',
    `defaultNamespace: ${JSON.stringify(options.namespace)}`,
    // No calls out of the machine.
    'disableNewsFetch: true',
    'notifyOnNewVersion: false',
    'codec:',
    // Holds the codec route's secret path token: this file is private (0600) like the rest.
    `  endpoint: ${JSON.stringify(options.codecEndpoint)}`,
  ];
  await writeFile(join(dir, 'cluster.yaml'), `${lines.join('\n')}\n`);
}

export function webUiProcess(configDir: string, logFile: string, pidFile: string): ProcessSpec {
  return {
    name: 'Temporal Web UI',
    command: webUiBin,
    args: ['--root', configDir, '--config', '.', '--env', 'cluster', 'start'],
    logFile,
    pidFile,
  };
}
