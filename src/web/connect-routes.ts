// The publisher-facing pages: pick an ESP, connect it (OAuth or API key), pick a list, done.
import { Router, type Request, type RequestHandler, type Response } from 'express';
import { z } from 'zod';
import { recordAudit } from '../audit/log';
import { ConnectError, pickList, saveConnection } from '../connect';
import type { Logger } from '../logger';
import type { BaseProcessor } from '../processors/base-processor';
import {
  InvalidCredentialsError,
  RateLimitedError,
  RequestRejectedError,
  TransientError,
} from '../processors/errors';
import { UnknownEspError } from '../processors/registry';
import type { AccountInfo, Credentials } from '../processors/types';
import { configurationIdSchema, NotFoundError } from '../storage';
import { RunInProgressError, startConfigurationRun, today } from '../temporal/runs';
import { OAUTH_ESPS, oauthRedirectUri } from '../config';
import type { WebDeps } from './app';
import { temporalClient } from './temporal-client';
import { h, hidden, page } from './pages';
import { publisherUrl } from '../publisher-link';
import { hashBinding, PendingFlows, type ClaimProblem } from './pending';
import { csrfToken, csrfValid, flowBinding, flowCookie, newNonce, type Signer } from './security';

const reauthorizeQuery = z.object({ reauthorize: configurationIdSchema.optional() });

export function connectRoutes(
  deps: WebDeps,
  signer: Signer,
  limiters: { posts: RequestHandler; starts: RequestHandler },
  log: Logger,
) {
  const { posts: postLimiter, starts: startLimiter } = limiters;
  const router = Router();
  const pending = new PendingFlows(deps.stores.blobs, deps.stores.secrets);
  const secure = deps.web.publicUrl.startsWith('https://');
  const redirectUri = (esp: string) => oauthRedirectUri(deps.web.publicUrl, esp);

  const processorFor = (req: Request, res: Response): BaseProcessor | undefined => {
    try {
      return deps.processors.get(String(req.params.esp));
    } catch (err) {
      if (!(err instanceof UnknownEspError)) throw err;
      res
        .status(404)
        .send(
          page(
            'Unknown ESP',
            `<h1>We don't know that ESP</h1><p><a href="/">See the ESPs you can connect</a>.</p>`,
            { kind: 'error' },
          ),
        );
      return undefined;
    }
  };

  router.get('/', (_req, res) => {
    const rows = deps.processors
      .list()
      .map((p) => {
        const d = p.descriptor;
        const actions = [
          d.oauth2 ? `<a class="button" href="/auth/${h(d.id)}/start">Connect ${h(d.displayName)}</a>` : '',
          d.apiKey
            ? `<a href="/auth/${h(d.id)}/key">${d.oauth2 ? 'or use an API key' : `Connect ${h(d.displayName)} with ${d.apiKey.label.match(/^[aeiou]/i) ? 'an' : 'a'} ${h(d.apiKey.label)}`}</a>`
            : '',
          // An ESP with OAuth whose app is not registered here: say why there is no sign-in button.
          !d.oauth2 && (OAUTH_ESPS as readonly string[]).includes(d.id)
            ? `<br><small>Signing in with ${h(d.displayName)} is not set up on this server (its operator sets <code>ESPRESSO_${h(d.id.toUpperCase())}_CLIENT_ID</code> and <code>_CLIENT_SECRET</code>); the key works the same.</small>`
            : '',
        ].filter(Boolean);
        return `<tr><td><strong>${h(d.displayName)}</strong></td><td>${actions.join(' ')}</td></tr>`;
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
  });

  router.get('/auth/:esp/start', startLimiter, async (req, res) => {
    const processor = processorFor(req, res);
    if (!processor) return;
    if (!processor.descriptor.oauth2)
      return void res.redirect(303, `/auth/${encodeURIComponent(processor.descriptor.id)}/key`);
    const query = reauthorizeQuery.safeParse(req.query);
    if (!query.success) return badRequest(res, query.error);
    if (!(await reauthorizable(res, processor, query.data.reauthorize))) return;
    // Nothing is stored until the ESP answers the callback: the signed state carries the flow.
    const binding = flowBinding(req, res, signer, secure);
    const nonce = newNonce();
    const esp = processor.descriptor.id;
    const { url } = processor.authorizationRequest(
      redirectUri(esp),
      signer.state(nonce, esp, binding, { reauthorizeId: query.data.reauthorize }),
      signer.codeVerifier(nonce),
    );
    // The target comes from the processor's descriptor, never from the request.
    res.redirect(302, url);
  });

  router.get('/auth/:esp/callback', async (req, res) => {
    const processor = processorFor(req, res);
    if (!processor) return;
    const esp = processor.descriptor.id;
    const query = z
      .object({
        state: z.string().min(1).max(500),
        code: z.string().min(1).max(2000).optional(),
        error: z.string().max(200).optional(),
      })
      .safeParse(req.query);
    if (!query.success) return badRequest(res, query.error);
    const binding = flowCookie(req, signer, secure);
    const state = signer.checkState(query.data.state, esp, binding);
    if ('problem' in state) return expired(res, esp);
    // Once: the state's nonce becomes a `used` record, swept when the state has expired.
    if (!(await pending.markUsed(state.nonce))) return expired(res, esp);
    if (query.data.error) {
      const denied = query.data.error === 'access_denied';
      return failure(
        res,
        400,
        denied ? 'You did not give access' : 'The authorization did not complete',
        denied
          ? `${h(processor.descriptor.displayName)} says access was denied, so nothing was connected. If that was a mistake, start again and choose Approve.`
          : `${h(processor.descriptor.displayName)} ended the authorization without giving access. Nothing was connected.`,
        esp,
      );
    }
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
        redirectUri(esp),
        processor.descriptor.oauth2?.pkce ? signer.codeVerifier(state.nonce) : undefined,
      );
      await complete(req, res, processor, credentials, account, state.reauthorizeId);
    } catch (err) {
      espFailure(res, processor, err);
    }
  });

  router.get('/auth/:esp/key', async (req, res) => {
    const processor = processorFor(req, res);
    if (!processor) return;
    const d = processor.descriptor;
    if (!d.apiKey) return void res.redirect(303, `/auth/${encodeURIComponent(d.id)}/start`);
    const query = reauthorizeQuery.safeParse(req.query);
    if (!query.success) return badRequest(res, query.error);
    if (!(await reauthorizable(res, processor, query.data.reauthorize))) return;
    res.send(
      page(
        `Connect ${d.displayName}`,
        `<h1>Connect ${h(d.displayName)}</h1>
<form method="post" action="/auth/${h(d.id)}/key">
  ${hidden('_csrf', csrfToken(req, res, signer, secure))}
  ${query.data.reauthorize ? hidden('reauthorize', query.data.reauthorize) : ''}
  <p><label for="apiKey">${h(d.apiKey.label)}</label><br><input id="apiKey" name="apiKey" type="password" autocomplete="off" required maxlength="500"></p>
  <p><button type="submit">Connect</button></p>
</form>
<p class="muted">The key is checked with ${h(d.displayName)} right away and stored encrypted; it is never shown again.</p>`,
      ),
    );
  });

  router.post('/auth/:esp/key', postLimiter, async (req, res) => {
    const processor = processorFor(req, res);
    if (!processor) return;
    if (!csrfValid(req, signer, secure)) return csrfFailure(res);
    const body = z
      .object({
        apiKey: z.string().trim().min(1, 'is required').max(500),
        reauthorize: configurationIdSchema.optional(),
      })
      .safeParse(req.body);
    if (!body.success) return badRequest(res, body.error);
    if (!(await reauthorizable(res, processor, body.data.reauthorize))) return;
    try {
      const { credentials, account } = await processor.connectWithApiKey(body.data.apiKey);
      await complete(req, res, processor, credentials, account, body.data.reauthorize);
    } catch (err) {
      espFailure(res, processor, err);
    }
  });

  router.post('/auth/:esp/list', postLimiter, async (req, res) => {
    const processor = processorFor(req, res);
    if (!processor) return;
    if (!csrfValid(req, signer, secure)) return csrfFailure(res);
    const body = z
      .object({ nonce: z.string().min(10).max(64), listId: z.string().min(1).max(200) })
      .safeParse(req.body);
    if (!body.success) return badRequest(res, body.error);
    const esp = processor.descriptor.id;
    const claimed = await pending.claim(body.data.nonce, 'choose_list', flowCookie(req, signer, secure), esp);
    if ('problem' in claimed) return claimFailure(res, claimed.problem, esp);
    await pending.finish(body.data.nonce);
    if (!claimed.secret.credentials || !claimed.flow.account) return expired(res, esp);
    try {
      await save(
        req,
        res,
        processor,
        claimed.secret.credentials,
        claimed.flow.account,
        body.data.listId,
        claimed.flow.reauthorizeId,
      );
    } catch (err) {
      espFailure(res, processor, err);
    }
  });

  /**
   * A re-authorization link names a configuration: it must exist and belong to this route's ESP,
   * checked before anything is asked of the ESP. Answers the refusal itself when it does not.
   */
  async function reauthorizable(
    res: Response,
    processor: BaseProcessor,
    reauthorizeId: string | undefined,
  ): Promise<boolean> {
    if (!reauthorizeId) return true;
    const esp = processor.descriptor.id;
    try {
      const configuration = await deps.stores.configurations.get(reauthorizeId);
      if (configuration.esp === esp) return true;
      failure(
        res,
        400,
        'That configuration is not connected to this ESP',
        `This link re-authorizes a configuration of another ESP, not ${h(processor.descriptor.displayName)}. Nothing was changed. Use the re-authorization link on the admin page.`,
        esp,
      );
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err;
      failure(
        res,
        404,
        'Unknown configuration',
        'The configuration this link re-authorizes does not exist any more.',
        esp,
      );
    }
    return false;
  }

  /** Validated credentials: pick the list if the account has several, else save. */
  async function complete(
    req: Request,
    res: Response,
    processor: BaseProcessor,
    credentials: Credentials,
    account: AccountInfo,
    reauthorizeId?: string,
  ): Promise<void> {
    let listId: string | undefined;
    if (reauthorizeId) {
      listId = (await deps.stores.configurations.get(reauthorizeId)).espListId;
    } else {
      try {
        listId = pickList(account);
      } catch (err) {
        if (!(err instanceof ConnectError) || err.code !== 'choose_list') throw err;
        return chooseList(req, res, processor, credentials, account);
      }
    }
    await save(req, res, processor, credentials, account, listId, reauthorizeId);
  }

  async function chooseList(
    req: Request,
    res: Response,
    processor: BaseProcessor,
    credentials: Credentials,
    account: AccountInfo,
  ) {
    const esp = processor.descriptor.id;
    const binding = flowBinding(req, res, signer, secure);
    const nonce = newNonce();
    await pending.put(
      nonce,
      { esp, binding: hashBinding(binding), stage: 'choose_list', account, createdAt: Date.now() },
      { credentials },
    );
    const options = account.lists
      .map(
        (l, i) =>
          `<p><label><input type="radio" name="listId" value="${h(l.id)}" ${i === 0 ? 'checked' : ''}> ${h(l.name)} <span class="muted">(${h(l.id)})</span></label></p>`,
      )
      .join('');
    res.send(
      page(
        'Choose a list',
        `<h1>Which list should espresso keep filled?</h1>
<p>${h(account.accountLabel)} has ${account.lists.length} lists. Choose the one your newsletter goes to.</p>
<form method="post" action="/auth/${h(esp)}/list">
  ${hidden('_csrf', csrfToken(req, res, signer, secure))}
  ${hidden('nonce', nonce)}
  ${options}
  <p><button type="submit">Connect this list</button></p>
</form>`,
      ),
    );
  }

  async function save(
    req: Request,
    res: Response,
    processor: BaseProcessor,
    credentials: Credentials,
    account: AccountInfo,
    listId: string | undefined,
    reauthorizeId?: string,
  ): Promise<void> {
    const esp = processor.descriptor.id;
    const { configuration, created } = await saveConnection(deps, {
      esp,
      credentials,
      account,
      listId,
      reauthorizeId,
    });
    await recordAudit(deps.stores.blobs, {
      actor: `publisher ${esp} account ${account.accountId}`,
      action: reauthorizeId ? 'reauthorize' : 'connect',
      configurationId: configuration.id,
      ...(created ? { detail: 'new configuration' } : {}),
      address: req.ip ?? '',
    });
    // The first run fills the field now; a run already writing it (a re-authorization during a
    // run) is left to finish, and the next daily run picks up what it did not reach.
    let firstRun: 'started' | 'running' | 'later' | 'disabled' =
      configuration.status === 'disabled' ? 'disabled' : 'started';
    if (firstRun === 'started') {
      try {
        const client = await temporalClient(deps);
        await startConfigurationRun(
          client,
          deps.stores,
          { configurationId: configuration.id, runDate: today(), mode: 'full' },
          'first-run',
        );
      } catch (err) {
        firstRun = err instanceof RunInProgressError ? 'running' : 'later';
        if (firstRun === 'later') {
          log.error(
            { configurationId: configuration.id, err: (err as Error).message },
            'could not start the first run',
          );
        }
      }
    }
    const link = await publisherUrl(deps.stores, deps.web.publicUrl, configuration.id);
    const list = account.lists.find((l) => l.id === configuration.espListId);
    const tag = `lctg=${processor.descriptor.mergeTag(configuration.fieldName)}`;
    res.send(
      page(
        'Connected',
        `<h1>${created ? 'Connected' : 'Re-connected'}: ${h(configuration.accountLabel)}${list ? ` · ${h(list.name)}` : ''}</h1>
<p>${
          firstRun === 'started'
            ? 'espresso is now giving every contact in this list a value in the <code>' +
              h(configuration.fieldName) +
              '</code> field. This first run takes from seconds to a few minutes, depending on the size of the list.'
            : firstRun === 'running'
              ? 'A run is filling the <code>' +
                h(configuration.fieldName) +
                '</code> field of this list right now; it goes on with the new connection.'
              : firstRun === 'disabled'
                ? 'The new connection is saved, but this configuration was disabled by an operator, so it stays disabled: espresso does not fill the <code>' +
                  h(configuration.fieldName) +
                  '</code> field until an operator enables it again.'
                : 'The connection is saved. The first fill of the <code>' +
                  h(configuration.fieldName) +
                  '</code> field starts with the next daily run.'
        }
Every day after that, espresso checks the connection, re-creates the field if it was deleted, and fills it for new contacts.</p>
<h2>Put this into your newsletter links</h2>
<p><span class="tag" id="merge-tag">${h(tag)}</span></p>
<p class="muted">For example <code>https://example.com/article?${h(tag)}</code>. ${h(processor.descriptor.displayName)} replaces the tag with each subscriber's value when it sends.</p>
<h2>Your page</h2>
<p>Come back any time to see the daily runs, reconnect or disconnect: <a id="publisher-link" href="${h(link)}">${h(link)}</a>. Keep this link private: anyone with it sees the page.</p>
<p class="muted">Configuration <code id="configuration-id">${h(configuration.id)}</code></p>`,
        { kind: 'ok' },
      ),
    );
  }

  function espFailure(res: Response, processor: BaseProcessor, err: unknown): void {
    const name = h(processor.descriptor.displayName);
    const esp = processor.descriptor.id;
    if (err instanceof InvalidCredentialsError) {
      return failure(
        res,
        400,
        `${processor.descriptor.displayName} did not accept the credentials`,
        `${name} said the key or authorization is not valid. Check that you copied the whole key, that it is still active, and try again.`,
        esp,
      );
    }
    if (err instanceof RateLimitedError || err instanceof TransientError) {
      return failure(
        res,
        502,
        `${processor.descriptor.displayName} is not answering`,
        `We could not reach ${name} just now. Nothing was connected. Please try again in a few minutes.`,
        esp,
      );
    }
    if (err instanceof ConnectError && err.code === 'account_mismatch') {
      return failure(
        res,
        400,
        'That is another account',
        'The account you signed in with is not the one this link re-authorizes. Sign in with the original account.',
        esp,
      );
    }
    if (err instanceof ConnectError || err instanceof RequestRejectedError) {
      return failure(
        res,
        400,
        'That did not work',
        `${name} refused the request. Nothing was connected. Please start again.`,
        esp,
      );
    }
    if (err instanceof NotFoundError) {
      return failure(
        res,
        404,
        'Unknown configuration',
        'The configuration this link re-authorizes does not exist any more.',
        esp,
      );
    }
    throw err;
  }

  return router;
}

function failure(res: Response, status: number, title: string, message: string, esp: string): void {
  res
    .status(status)
    .send(
      page(
        title,
        `<h1>${h(title)}</h1><p>${message}</p><p><a class="button" href="/auth/${h(esp)}/start">Try again</a> · <a href="/">All ESPs</a></p>`,
        { kind: 'error' },
      ),
    );
}

/** A pending flow that cannot be continued on this route; nothing is created or changed. */
function claimFailure(res: Response, problem: ClaimProblem, esp: string): void {
  if (problem !== 'other_esp') return expired(res, esp);
  failure(
    res,
    400,
    'This connection belongs to another ESP',
    'This connection was started for another ESP than the one this page connects. Nothing was connected or changed. Please start again from the list of ESPs.',
    esp,
  );
}

function expired(res: Response, esp: string): void {
  failure(
    res,
    400,
    'This link has expired',
    'This connection link has expired, was already used, or was opened in another browser. Nothing was connected. Please start again.',
    esp,
  );
}

function csrfFailure(res: Response): void {
  res
    .status(403)
    .send(
      page(
        'Form expired',
        '<h1>This form has expired</h1><p>Please go back, reload the page and submit it again.</p>',
        { kind: 'error' },
      ),
    );
}

export function badRequest(res: Response, error: z.ZodError): void {
  const issue = error.issues[0]!;
  const field = issue.path.join('.') || 'request';
  res
    .status(400)
    .send(
      page(
        'Invalid request',
        `<h1>Invalid request</h1><p><code>${h(field)}</code>: ${h(issue.message)}</p>`,
        { kind: 'error' },
      ),
    );
}
