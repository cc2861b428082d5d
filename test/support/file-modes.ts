import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';

export interface FileMode {
  path: string;
  dir: boolean;
  /** Permission bits as octal text, e.g. `600`. */
  mode: string;
}

/** `root` and everything under it, with its permission bits. */
export async function fileModes(root: string): Promise<FileMode[]> {
  const entry = async (path: string, dir: boolean) => ({
    path,
    dir,
    mode: ((await stat(path)).mode & 0o777).toString(8),
  });
  const out = [await entry(root, true)];
  for (const child of await readdir(root, { withFileTypes: true, recursive: true })) {
    out.push(await entry(join(child.parentPath, child.name), child.isDirectory()));
  }
  return out;
}

/** Entries another local user could read or enter: anything but folders 0700 and files 0600. */
export async function notPrivate(root: string): Promise<string[]> {
  return (await fileModes(root))
    .filter((e) => e.mode !== (e.dir ? '700' : '600'))
    .map((e) => `${e.path} is ${e.mode}`);
}
