// The Sandbox's OAuth consent run by a program instead of a person: for tests, the benchmark and
// the chaos run, which connect OAuth configurations without a browser.
import type { SandboxProcessor } from '../processors/sandbox';
import type { AccountInfo, Credentials } from '../processors/types';

/** Runs the Sandbox's OAuth consent (approved for `accountId`) and the code exchange; returns the tokens. */
export async function sandboxOAuthCredentials(
  sandboxUrl: string,
  processor: SandboxProcessor,
  accountId: string,
): Promise<Credentials> {
  return (await sandboxOAuthConnection(sandboxUrl, processor, accountId)).credentials;
}

/** The same, with the account the tokens give access to (as the web flow's callback has it). */
export async function sandboxOAuthConnection(
  sandboxUrl: string,
  processor: SandboxProcessor,
  accountId: string,
): Promise<{ credentials: Credentials; account: AccountInfo }> {
  const redirectUri = 'http://127.0.0.1:9/callback';
  const { url, codeVerifier } = processor.authorizationRequest(redirectUri, 'state-1');
  const consent = await fetch(url);
  if (consent.status !== 200) throw new Error(`consent page answered ${consent.status}`);
  const query = new URL(url).searchParams;
  const decision = await fetch(`${sandboxUrl}/oauth/authorize`, {
    method: 'POST',
    redirect: 'manual',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      decision: 'approve',
      account: accountId,
      clientId: query.get('client_id')!,
      redirectUri,
      state: 'state-1',
      codeChallenge: query.get('code_challenge') ?? '',
    }),
  });
  const code = new URL(decision.headers.get('location')!).searchParams.get('code')!;
  return processor.completeAuthorization(code, redirectUri, codeVerifier);
}
