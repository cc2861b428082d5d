import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

function findProjectRoot(start: string): string {
  let dir = start;
  while (!existsSync(join(dir, 'package.json'))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`package.json not found above ${start}`);
    dir = parent;
  }
  return dir;
}

/** The repository root, whether running from src/ (ts) or dist/src/ (compiled). */
export const projectRoot = findProjectRoot(resolve(__dirname));
