// espresso's web server and a Chromium for browser tests: the server on a free port of 127.0.0.1
// (its public URL), with the processors the test gives it, beside the test's worker.
import type { Server } from 'node:http';
import { chromium, type Browser } from 'playwright-core';
import type { BaseProcessor } from '../../src/processors/base-processor';
import { ProcessorRegistry } from '../../src/processors/registry';
import { createApp } from '../../src/web/app';
import { CHROMIUM, CHROMIUM_ARGS } from './chromium';
import type { Espresso } from './espresso';
import { freePort } from './ports';
import { webDeps } from './web';

export async function browserAndWeb(
  e: Espresso,
  /** The web server's processors; given its public URL when they need it (an OAuth redirect URI). */
  processors: BaseProcessor[] | ((web: string) => BaseProcessor[]),
  admin?: { username: string; password: string },
): Promise<{ web: string; browser: Browser; stop: () => Promise<void> }> {
  const port = await freePort();
  const web = `http://127.0.0.1:${port}`;
  const app = createApp(
    webDeps(e.stores, async () => e.env.connection, {
      processors: new ProcessorRegistry(typeof processors === 'function' ? processors(web) : processors),
      web: {
        publicUrl: web,
        sessionSecret: 'browser-test-secret-0123456789abcdef',
        admin: admin ? { user: admin.username, password: admin.password } : {},
      },
    }),
  );
  const server = await new Promise<Server>((resolve) => {
    const s = app.listen(port, '127.0.0.1', () => resolve(s));
  });
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  return {
    web,
    browser,
    stop: async () => {
      await browser.close();
      server.closeAllConnections();
      server.close();
    },
  };
}
