// The import cycles among a folder's TypeScript files, as `npx madge --circular --extensions ts`
// finds them: every relative import counts, type-only ones and re-exports included.
import { readdir, readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import ts from 'typescript';

async function tsFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  return entries
    .filter((e) => e.isFile() && e.name.endsWith('.ts') && !e.name.endsWith('.d.ts'))
    .map((e) => join(e.parentPath, e.name));
}

function resolveImport(from: string, specifier: string): string | undefined {
  if (!specifier.startsWith('.')) return undefined;
  const base = resolve(dirname(from), specifier);
  return [`${base}.ts`, join(base, 'index.ts')].find((candidate) => existsSync(candidate));
}

/** Each cycle as the files on it (relative to `root`), starting from the first in sorted order. */
export async function importCycles(root: string): Promise<string[][]> {
  const files = (await tsFiles(root)).sort();
  const edges = new Map<string, string[]>();
  for (const file of files) {
    const { importedFiles } = ts.preProcessFile(await readFile(file, 'utf8'), true, true);
    const targets = importedFiles.map((i) => resolveImport(file, i.fileName)).filter((t) => t !== undefined);
    edges.set(file, [...new Set(targets)].sort());
  }
  // Depth-first from every file; a file met again while still on the path closes a cycle.
  const cycles: string[][] = [];
  const seen = new Set<string>();
  const done = new Set<string>();
  const path: string[] = [];
  const visit = (file: string) => {
    path.push(file);
    seen.add(file);
    for (const next of edges.get(file) ?? []) {
      if (done.has(next)) continue;
      if (seen.has(next)) cycles.push(path.slice(path.indexOf(next)).map((f) => relative(root, f)));
      else visit(next);
    }
    path.pop();
    done.add(file);
  };
  for (const file of files) if (!seen.has(file)) visit(file);
  return cycles;
}
