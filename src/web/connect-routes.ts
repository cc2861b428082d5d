// The publisher-facing pages: pick an ESP, connect it (OAuth or API key), pick a list, done.
import { Router, type Request, type RequestHandler, type Response } from 'express';
import { z } from 'zod';
import { OAUTH_ESPS, oauthRedirectUri } from '../config';
import type { Logger } from '../logger';
import type { BaseProcessor } from '../processors/base-processor';
import { configurationIdSchema } from '../storage';
import type { WebDeps } from './deps';
import { claimFailure, espFailure, expired, failure } from './connect-failures';
import { complete, processorFor, reauthorizable, save, type ConnectFlow } from './connect-flow';
import { badRequest, formExpired } from './error-pages';
import { escapeHtml, hidden, page } from './pages';
import { PendingFlows } from './pending';
import { csrfToken, csrfValid, flowBinding, flowCookie, newNonce, type Signer } from './security';

const reauthorizeQuery = z.object({ reauthorize: configurationIdSchema.optional() });

const callbackQuery = z.object({
  state: z.string().min(1).max(500),
  code: z.string().min(1).max(2000).optional(),
  error: z.string().max(200).optional(),
});

const keyForm = z.object({
  apiKey: z.string().trim().min(1, 'is required').max(500),
  reauthorize: configurationIdSchema.optional(),
});

const listForm = z.object({ nonce: z.string().min(10).max(64), listId: z.string().min(1).max(200) });

type Handler = (flow: ConnectFlow, req: Request, res: Response) => Promise<void> | void;

export function connectRoutes(
  deps: WebDeps,
  signer: Signer,
  limiters: { posts: RequestHandler; starts: RequestHandler },
  log: Logger,
) {
  const flow: ConnectFlow = {
    deps,
    signer,
    log,
    pending: new PendingFlows(deps.stores.blobs, deps.stores.secrets),
    secure: deps.web.publicUrl.startsWith('https://'),
  };
  const to =
    (handler: Handler): RequestHandler =>
    (req, res) =>
      handler(flow, req, res);
  return Router()
    .get('/', to(espList))
    .get('/auth/:esp/start', limiters.starts, to(oauthStart))
    .get('/auth/:esp/callback', to(oauthCallback))
    .get('/auth/:esp/key', to(apiKeyForm))
    .post('/auth/:esp/key', limiters.posts, to(apiKeyPosted))
    .post('/auth/:esp/list', limiters.posts, to(listChosen));
}

const redirectUri = (flow: ConnectFlow, esp: string) => oauthRedirectUri(flow.deps.web.publicUrl, esp);

/** The start page: every ESP with its ways to connect. */
function espList(flow: ConnectFlow, _req: Request, res: Response): void {
  const rows = flow.deps.processors
    .list()
    .map((p) => {
      const d = p.descriptor;
      const actions = [
        d.oauth2
          ? `<a class="button" href="/auth/${escapeHtml(d.id)}/start">Connect ${escapeHtml(d.displayName)}</a>`
          : '',
        d.apiKey
          ? `<a href="/auth/${escapeHtml(d.id)}/key">${d.oauth2 ? 'or use an API key' : `Connect ${escapeHtml(d.displayName)} with ${d.apiKey.label.match(/^[aeiou]/i) ? 'an' : 'a'} ${escapeHtml(d.apiKey.label)}`}</a>`
          : '',
        // An ESP with OAuth whose app is not registered here: say why there is no sign-in button.
        !d.oauth2 && (OAUTH_ESPS as readonly string[]).includes(d.id)
          ? `<br><small>Signing in with ${escapeHtml(d.displayName)} is not set up on this server (its operator sets <code>ESPRESSO_${escapeHtml(d.id.toUpperCase())}_CLIENT_ID</code> and <code>_CLIENT_SECRET</code>); the key works the same.</small>`
          : '',
      ].filter(Boolean);
      return `<tr><td><strong>${escapeHtml(d.displayName)}</strong></td><td>${actions.join(' ')}</td></tr>`;
    })
    .join('');
  res.send(
    page(
      'Connect your email service provider',
      `<h1>Connect your email service provider</h1>
<p>espresso gives every subscriber a stable, random ID in a contact field called <code>lcee</code>,
and keeps it filled every day. Connect your ESP once; everything after that is automatic.</p>
<table>${rows}</table>`,
    ),
  );
}

/** Sends the browser to the ESP's consent page (an ESP without OAuth: to its key form). */
async function oauthStart(flow: ConnectFlow, req: Request, res: Response): Promise<void> {
  const processor = processorFor(flow, req, res);
  if (!processor) return;
  if (!processor.descriptor.oauth2)
    return void res.redirect(303, `/auth/${encodeURIComponent(processor.descriptor.id)}/key`);
  const query = reauthorizeQuery.safeParse(req.query);
  if (!query.success) return badRequest(res, query.error);
  if (!(await reauthorizable(flow, res, processor, query.data.reauthorize))) return;
  // Nothing is stored until the ESP answers the callback: the signed state carries the flow.
  const binding = flowBinding(req, res, flow.signer, flow.secure);
  const nonce = newNonce();
  const esp = processor.descriptor.id;
  const { url } = processor.authorizationRequest(
    redirectUri(flow, esp),
    flow.signer.state(nonce, esp, binding, { reauthorizeId: query.data.reauthorize }),
    flow.signer.codeVerifier(nonce),
  );
  // The target comes from the processor's descriptor, never from the request.
  res.redirect(302, url);
}

/** The ESP's answer to the consent page: a code to exchange for credentials, or a refusal. */
async function oauthCallback(flow: ConnectFlow, req: Request, res: Response): Promise<void> {
  const processor = processorFor(flow, req, res);
  if (!processor) return;
  const esp = processor.descriptor.id;
  const query = callbackQuery.safeParse(req.query);
  if (!query.success) return badRequest(res, query.error);
  const binding = flowCookie(req, flow.signer, flow.secure);
  const state = flow.signer.checkState(query.data.state, esp, binding);
  if ('problem' in state) return expired(res, esp);
  // Once: the state's nonce becomes a `used` record, swept when the state has expired.
  if (!(await flow.pending.markUsed(state.nonce))) return expired(res, esp);
  if (query.data.error) return consentRefused(res, processor, query.data.error);
  if (!query.data.code)
    return failure(
      res,
      400,
      'The authorization did not complete',
      'The ESP sent no authorization code. Nothing was connected.',
      esp,
    );
  try {
    const { credentials, account } = await processor.completeAuthorization(
      query.data.code,
      redirectUri(flow, esp),
      processor.descriptor.oauth2?.pkce ? flow.signer.codeVerifier(state.nonce) : undefined,
    );
    await complete(flow, req, res, processor, credentials, account, state.reauthorizeId);
  } catch (err) {
    espFailure(res, processor, err);
  }
}

function consentRefused(res: Response, processor: BaseProcessor, error: string): void {
  const denied = error === 'access_denied';
  failure(
    res,
    400,
    denied ? 'You did not give access' : 'The authorization did not complete',
    denied
      ? `${escapeHtml(processor.descriptor.displayName)} says access was denied, so nothing was connected. If that was a mistake, start again and choose Approve.`
      : `${escapeHtml(processor.descriptor.displayName)} ended the authorization without giving access. Nothing was connected.`,
    processor.descriptor.id,
  );
}

/** The API key form (an ESP without API keys: its OAuth start). */
async function apiKeyForm(flow: ConnectFlow, req: Request, res: Response): Promise<void> {
  const processor = processorFor(flow, req, res);
  if (!processor) return;
  const d = processor.descriptor;
  if (!d.apiKey) return void res.redirect(303, `/auth/${encodeURIComponent(d.id)}/start`);
  const query = reauthorizeQuery.safeParse(req.query);
  if (!query.success) return badRequest(res, query.error);
  if (!(await reauthorizable(flow, res, processor, query.data.reauthorize))) return;
  res.send(
    page(
      `Connect ${d.displayName}`,
      `<h1>Connect ${escapeHtml(d.displayName)}</h1>
<form method="post" action="/auth/${escapeHtml(d.id)}/key">
  ${hidden('_csrf', csrfToken(req, res, flow.signer, flow.secure))}
  ${query.data.reauthorize ? hidden('reauthorize', query.data.reauthorize) : ''}
  <p><label for="apiKey">${escapeHtml(d.apiKey.label)}</label><br><input id="apiKey" name="apiKey" type="password" autocomplete="off" required maxlength="500"></p>
  <p><button type="submit">Connect</button></p>
</form>
<p class="muted">The key is checked with ${escapeHtml(d.displayName)} right away and stored encrypted; it is never shown again.</p>`,
    ),
  );
}

/** A posted API key: checked with the ESP, then the list and the configuration. */
async function apiKeyPosted(flow: ConnectFlow, req: Request, res: Response): Promise<void> {
  const processor = processorFor(flow, req, res);
  if (!processor) return;
  if (!csrfValid(req, flow.signer, flow.secure)) return formExpired(res);
  const body = keyForm.safeParse(req.body);
  if (!body.success) return badRequest(res, body.error);
  if (!(await reauthorizable(flow, res, processor, body.data.reauthorize))) return;
  try {
    const { credentials, account } = await processor.connectWithApiKey(body.data.apiKey);
    await complete(flow, req, res, processor, credentials, account, body.data.reauthorize);
  } catch (err) {
    espFailure(res, processor, err);
  }
}

/** The list chosen on the list page: the pending flow's credentials are saved for it. */
async function listChosen(flow: ConnectFlow, req: Request, res: Response): Promise<void> {
  const processor = processorFor(flow, req, res);
  if (!processor) return;
  if (!csrfValid(req, flow.signer, flow.secure)) return formExpired(res);
  const body = listForm.safeParse(req.body);
  if (!body.success) return badRequest(res, body.error);
  const esp = processor.descriptor.id;
  const { nonce, listId } = body.data;
  const claimed = await flow.pending.claim(
    nonce,
    'choose_list',
    flowCookie(req, flow.signer, flow.secure),
    esp,
  );
  if ('problem' in claimed) return claimFailure(res, claimed.problem, esp);
  await flow.pending.finish(nonce);
  if (!claimed.secret.credentials || !claimed.flow.account) return expired(res, esp);
  try {
    await save(
      flow,
      req,
      res,
      processor,
      claimed.secret.credentials,
      claimed.flow.account,
      listId,
      claimed.flow.reauthorizeId,
    );
  } catch (err) {
    espFailure(res, processor, err);
  }
}
