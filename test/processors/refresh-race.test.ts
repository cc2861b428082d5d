// Several processes refreshing one OAuth grant at the same moment (issue: a healthy configuration
// sent to needs_reauth by a refresh race). The Sandbox rotates refresh tokens and revokes the whole
// grant when a rotated one is presented again (reuse detection).
import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { projectRoot } from '../../src/paths';
import { SandboxProcessor } from '../../src/processors/sandbox';
import type { Credentials } from '../../src/processors/types';
import { LocalSecretStore } from '../../src/storage/local-secret-store';
import { tempDir } from '../support/tmp';
import { sandboxOAuthCredentials, startSandbox } from './sandbox-harness';

const run = promisify(execFile);
const CHILD = join(projectRoot, 'dist', 'test', 'support', 'refresh-child.js');
const SECRET_ID = 'cred_refresh_race';

describe('OAuth refresh across processes', function () {
  this.timeout(120_000);
  let sandbox: Awaited<ReturnType<typeof startSandbox>>;
  let dir: string;
  let secrets: LocalSecretStore;
  before(async () => {
    sandbox = await startSandbox();
    dir = await tempDir();
    secrets = new LocalSecretStore(`${dir}/secrets`, { keyFile: `${dir}/key` });
    const processor = new SandboxProcessor(
      { secrets },
      { url: sandbox.url, rateLimit: { requests: 1000, perMs: 1000 }, concurrency: 4 },
    );
    await secrets.put(
      SECRET_ID,
      JSON.stringify(await sandboxOAuthCredentials(sandbox, processor, 'acct_demo')),
    );
  });
  after(() => sandbox.stop());

  /** The stored access token expires now (as it would mid-run); every process asks for credentials at once. */
  async function expireAndAskFrom(
    processes: number,
  ): Promise<Array<{ accessToken?: string; error?: string }>> {
    const stored = JSON.parse(await secrets.get(SECRET_ID)) as Extract<Credentials, { kind: 'oauth2' }>;
    await secrets.put(SECRET_ID, JSON.stringify({ ...stored, expiresAt: Date.now() - 1 }));
    sandbox.state.expireAccessTokens('acct_demo');
    const startAt = String(Date.now() + 1_500); // after every process has loaded
    const outputs = await Promise.all(
      Array.from({ length: processes }, () =>
        run(process.execPath, [CHILD, sandbox.url, dir, SECRET_ID, startAt]),
      ),
    );
    return outputs.map(({ stdout }) => JSON.parse(stdout.trim()) as { accessToken?: string; error?: string });
  }

  for (const processes of [2, 4]) {
    it(`${processes} processes at once: one token grant per expiry, no refresh token presented twice`, async () => {
      const oauth = sandbox.state.accounts.get('acct_demo')!.oauth;
      for (let round = 1; round <= 3; round++) {
        const before = { ...oauth };
        const answers = await expireAndAskFrom(processes);
        assert.deepEqual(
          answers.filter((a) => a.error),
          [],
          `round ${round}: a process failed to get credentials`,
        );
        assert.equal(
          new Set(answers.map((a) => a.accessToken)).size,
          1,
          'the processes got different tokens',
        );
        assert.equal(
          oauth.refreshTokenReuses,
          before.refreshTokenReuses,
          'a rotated refresh token was reused',
        );
        assert.equal(oauth.refreshes - before.refreshes, 1, `round ${round}: not one refresh per expiry`);
        const saved = JSON.parse(await secrets.get(SECRET_ID)) as { accessToken: string };
        assert.equal(saved.accessToken, answers[0]!.accessToken, 'the new tokens were not saved');
      }
    });
  }

  it('a grant the ESP really revoked fails in every process (the publisher must reconnect)', async () => {
    sandbox.state.revokeGrants('acct_demo');
    const answers = await expireAndAskFrom(2);
    for (const a of answers) assert.match(a.error ?? '', /^InvalidCredentialsError/);
  });
});
