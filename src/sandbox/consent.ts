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
  const back = await answerSandboxConsent(sandboxUrl, url, { account: accountId });
  const code = back.searchParams.get('code')!;
  return processor.completeAuthorization(code, redirectUri, codeVerifier);
}

/**
 * Answers the Sandbox's consent page for `authorizeUrl` as a person would (approve or deny, for
 * `account`); returns where the Sandbox sends the browser back (the redirect URI with code or error).
 */
export async function answerSandboxConsent(
  sandboxUrl: string,
  authorizeUrl: string,
  options: { account: string; decision?: 'approve' | 'deny' },
): Promise<URL> {
  const query = new URL(authorizeUrl).searchParams;
  const res = await fetch(`${sandboxUrl}/oauth/authorize`, {
    method: 'POST',
    redirect: 'manual',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      decision: options.decision ?? 'approve',
      account: options.account,
      clientId: query.get('client_id')!,
      redirectUri: query.get('redirect_uri')!,
      state: query.get('state')!,
      codeChallenge: query.get('code_challenge') ?? '',
    }),
  });
  return new URL(res.headers.get('location')!);
}
