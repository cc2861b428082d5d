import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createStores } from '../../src/storage';

export function tempDir(prefix = 'espresso-test-'): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

/** Local stores (blobs, encrypted secrets, configurations) in a fresh temp directory. */
export async function tempStores() {
  const dir = await tempDir();
  return createStores({
    kind: 'local',
    blobDir: join(dir, 'blobs'),
    secretDir: join(dir, 'secrets'),
    secretKeyFile: join(dir, 'secret.key'),
  });
}
