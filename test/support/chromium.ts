import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

export const CHROMIUM = '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];

/**
 * Debian's chromium, installed when missing (as root, with apt-get). Returns why it cannot be had,
 * or undefined when it is there.
 */
export function ensureChromium(): string | undefined {
  if (existsSync(CHROMIUM)) return undefined;
  if (process.getuid?.() !== 0)
    return `${CHROMIUM} is missing and installing it needs root (apt-get install chromium)`;
  console.log('      installing Debian chromium for the browser tests (apt-get, once)...');
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const update = spawnSync('apt-get', ['update', '-qq'], { stdio: 'ignore', env, timeout: 300_000 });
  if (update.status !== 0) return `apt-get update failed (${update.status ?? update.error?.message})`;
  const install = spawnSync('apt-get', ['install', '-y', '-qq', 'chromium'], {
    stdio: 'ignore',
    env,
    timeout: 600_000,
  });
  if (install.status !== 0 || !existsSync(CHROMIUM))
    return `apt-get install chromium failed (${install.status ?? install.error?.message})`;
  return undefined;
}
