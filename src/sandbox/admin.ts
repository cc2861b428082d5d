// The Sandbox's admin API (/_sandbox) as espresso's own programs call it: the CLI, the doctor, the
// benchmark and the tests. Every request carries the admin token.
import type { AppConfig } from '../config';
import { readKeyFile } from '../lib/key-file';

/** A Sandbox and the token of its admin API. */
export interface SandboxAdmin {
  url: string;
  adminToken: string;
}

/** A request to the Sandbox's admin API; `path` is under /_sandbox (e.g. `/stats`). */
export function sandboxAdmin(sandbox: SandboxAdmin, path: string, init: RequestInit = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  headers.set('authorization', `Bearer ${sandbox.adminToken}`);
  return fetch(`${sandbox.url}/_sandbox${path}`, { ...init, headers });
}

/** The admin token of the Sandbox this configuration runs: the variable, else the Sandbox's key file. */
export async function sandboxAdminToken(config: AppConfig['sandbox']): Promise<string> {
  const token = config.adminToken ?? (await readKeyFile(config.adminTokenFile));
  if (!token) {
    throw new Error(
      `no Sandbox admin token yet (${config.adminTokenFile} is created at the Sandbox's first start; or set ESPRESSO_SANDBOX_ADMIN_TOKEN like the Sandbox's)`,
    );
  }
  return token;
}
