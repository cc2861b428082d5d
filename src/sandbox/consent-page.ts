import { escapeHtml } from '../lib/html';

export interface ConsentRequest {
  clientId: string;
  redirectUri: string;
  state: string;
  scope: string;
  codeChallenge: string;
  codeChallengeMethod: string;
}

/** The page an authorization request that cannot go back to its client gets (no redirect). */
export function authorizeErrorPage(code: string, message: string): string {
  return `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <title>Sandbox ESP — authorization refused</title>
  </head>
  <body>
    <h1>This authorization request is refused</h1>
    <p><code>${escapeHtml(code)}</code>: ${escapeHtml(message)}</p>
  </body>
</html>`;
}

/** The Sandbox ESP's OAuth consent page: pick an account, then Approve or Deny. */
export function consentPage(request: ConsentRequest, accounts: Array<{ id: string; name: string }>): string {
  const hidden = Object.entries(request)
    .map(([name, value]) => `<input type="hidden" name="${name}" value="${escapeHtml(value)}">`)
    .join('\n      ');
  const options = accounts
    .map((a) => `<option value="${escapeHtml(a.id)}">${escapeHtml(a.name)} (${escapeHtml(a.id)})</option>`)
    .join('');
  return `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <title>Sandbox ESP — authorize espresso</title>
    <style>
      body { font-family: system-ui, sans-serif; max-width: 32rem; margin: 4rem auto; padding: 0 1rem; }
      .badge { background: #fde68a; padding: 0.1rem 0.5rem; border-radius: 0.3rem; font-size: 0.8rem; }
      button { font-size: 1rem; padding: 0.5rem 1.2rem; margin-right: 0.5rem; }
    </style>
  </head>
  <body>
    <p><span class="badge">Sandbox ESP · test mode</span></p>
    <h1>Allow espresso to access your account?</h1>
    <p>espresso wants to read your lists and contacts and write one custom contact field
      (scopes: <code>${escapeHtml(request.scope || 'default')}</code>).</p>
    <form method="post" action="/oauth/authorize">
      ${hidden}
      <p><label>Account <select name="account">${options}</select></label></p>
      <button type="submit" name="decision" value="approve">Approve</button>
      <button type="submit" name="decision" value="deny">Deny</button>
    </form>
  </body>
</html>`;
}
