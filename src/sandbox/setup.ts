import { existsSync, readFileSync } from 'node:fs';
import { z } from 'zod';
import type { AppConfig } from '../config';
import { applySettings, settingsSchema } from './settings';
import { defaultSettings } from './account-settings';
import { SANDBOX_CLIENT } from './oauth-client';
import { SandboxList, SandboxState } from './state';

/** ESPRESSO_SANDBOX_CONFIG: the accounts, lists and settings to start with instead of the demo. */
const configFileSchema = z.object({
  accounts: z.array(
    z.object({
      id: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/),
      name: z.string().min(1),
      apiKeys: z.array(z.string().min(8)).default([]),
      lists: z.array(
        z.object({ id: z.string(), name: z.string(), contacts: z.number().int().min(0).default(0) }),
      ),
      settings: settingsSchema.default({}),
    }),
  ),
});

/**
 * The state the Sandbox starts with: the snapshot if there is one, else the config file, else the
 * demo; with espresso's OAuth client registered for `redirectUri`, espresso's callback.
 */
export async function initialSandboxState(
  config: AppConfig['sandbox'],
  redirectUri: string,
): Promise<SandboxState> {
  const state = await initialAccounts(config);
  state.clients.set(SANDBOX_CLIENT.id, { ...SANDBOX_CLIENT, redirectUris: [redirectUri] });
  return state;
}

async function initialAccounts(config: AppConfig['sandbox']): Promise<SandboxState> {
  if (config.snapshotFile && existsSync(config.snapshotFile)) return SandboxState.load(config.snapshotFile);
  if (!config.configFile) return SandboxState.demo(config.seedContacts);
  const parsed = configFileSchema.safeParse(JSON.parse(readFileSync(config.configFile, 'utf8')));
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new Error(`${config.configFile}: ${issue.path.join('.')}: ${issue.message}`);
  }
  const state = new SandboxState();
  for (const a of parsed.data.accounts) {
    const account = state.addAccount(a.id, a.name, a.apiKeys);
    account.settings = applySettings(defaultSettings(), a.settings);
    for (const l of a.lists) {
      account.lists.set(l.id, new SandboxList(l.id, l.name));
      if (l.contacts) state.seed(a.id, l.id, l.contacts);
    }
  }
  return state;
}
