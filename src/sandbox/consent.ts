// The Sandbox's OAuth consent run by a program instead of a person: for tests, the benchmark and
// the chaos run, which connect OAuth configurations without a browser.
import type { SandboxProcessor } from '../processors/sandbox';
import type { AccountInfo, Credentials } from '../processors/types';

/** A Sandbox, and a redirect URI registered there for espresso's OAuth client. */
export interface SandboxOAuthClient {
  url: string;
  redirectUri: string;
}

/** Runs the Sandbox's OAuth consent (approved for `accountId`) and the code exchange; returns the tokens. */
export async function sandboxOAuthCredentials(
  sandbox: SandboxOAuthClient,
  processor: SandboxProcessor,
  accountId: string,
): Promise<Credentials> {
  return (await sandboxOAuthConnection(sandbox, processor, accountId)).credentials;
}

/** The same, with the account the tokens give access to (as the web flow's callback has it). */
export async function sandboxOAuthConnection(
  sandbox: SandboxOAuthClient,
  processor: SandboxProcessor,
  accountId: string,
): Promise<{ credentials: Credentials; account: AccountInfo }> {
  const { url, codeVerifier } = processor.authorizationRequest(sandbox.redirectUri, 'state-1');
  const consent = await fetch(url);
  if (consent.status !== 200) throw new Error(`consent page answered ${consent.status}`);
  const back = await answerSandboxConsent(sandbox.url, url, { account: accountId });
  const code = back.searchParams.get('code');
  if (!code) throw new Error(`consent refused: ${back.searchParams.get('error')}`);
  return processor.completeAuthorization(code, sandbox.redirectUri, codeVerifier);
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
      codeChallengeMethod: query.get('code_challenge_method') ?? '',
    }),
  });
  const location = res.headers.get('location');
  if (!location) throw new Error(`the consent answer was refused with ${res.status}`);
  return new URL(location);
}
