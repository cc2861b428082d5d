// Sandbox ESP entry point (`espresso sandbox start`, and a child of `espresso start`).
import { loadConfigOrExit } from '../load-config';
import { oauthRedirectUri } from '../config';
import { loadOrCreateKeyFile } from '../lib/key-file';
import { closeOnShutdown } from '../lib/shutdown';
import { createLogger } from '../logger';
import { createSandboxServer } from './server';
import { initialSandboxState } from './setup';
import { keepFilesPrivate } from '../lib/private-files';

keepFilesPrivate();

async function main(): Promise<void> {
  const config = loadConfigOrExit();
  const log = createLogger('sandbox', config.logLevel);
  const { sandbox } = config;
  const state = await initialSandboxState(sandbox, oauthRedirectUri(config.web.publicUrl, 'sandbox'));
  const adminToken = sandbox.adminToken ?? (await loadOrCreateKeyFile(sandbox.adminTokenFile));
  const server = createSandboxServer(state, { adminToken });
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(sandbox.port, sandbox.host, resolve);
  });
  log.info(
    {
      url: sandbox.url,
      snapshot: sandbox.snapshotFile ?? null,
      adminTokenFrom: sandbox.adminToken ? 'ESPRESSO_SANDBOX_ADMIN_TOKEN' : sandbox.adminTokenFile,
    },
    'Sandbox ESP listening',
  );

  closeOnShutdown(server, {
    beforeClose: async () => {
      if (!sandbox.snapshotFile) return;
      await state.save(sandbox.snapshotFile);
      log.info({ snapshot: sandbox.snapshotFile }, 'Sandbox state saved');
    },
  });
}

main().catch((err) => {
  console.error(`sandbox failed: ${(err as Error).message}`);
  process.exit(1);
});
