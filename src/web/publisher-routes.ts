// /publisher/<id>/<token>: the publisher's own page, reached by the private link the success page
// gives (src/publisher-link.ts): connection status, recent runs, the merge tag, "reconnect"
// when it needs re-authorization, and "disconnect" (after a confirmation).
import { Router, type Request, type RequestHandler, type Response } from 'express';
import { recordAudit } from '../audit/log';
import { disabledByOperator, DISCONNECTED_BY_PUBLISHER } from '../connect';
import { runHistory } from '../runs/history';
import { configurationIdSchema, NotFoundError, type Configuration } from '../storage';
import type { WebDeps } from './deps';
import { escapeHtml, hidden, page } from './pages';
import { linkValid } from '../publisher-link';
import { formExpired } from './error-pages';
import { csrfToken, csrfValid, type Signer } from './security';

const RECENT_RUNS = 10;

export function publisherRoutes(deps: WebDeps, signer: Signer, postLimiter: RequestHandler) {
  const secure = deps.web.publicUrl.startsWith('https://');
  const router = Router();

  /** The configuration of a valid, unrevoked link; otherwise one 404 page says nothing more. */
  async function linked(req: Request, res: Response): Promise<Configuration | undefined> {
    const id = configurationIdSchema.safeParse(req.params.id);
    const token = String(req.params.token);
    try {
      if (id.success && (await linkValid(deps.stores, id.data, token)))
        return await deps.stores.configurations.get(id.data);
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err;
    }
    res
      .status(404)
      .send(
        page(
          'Link not valid',
          '<h1>This link is not valid</h1><p>It may have been replaced by a newer one. Ask your espresso contact for a new link.</p>',
          { kind: 'error' },
        ),
      );
    return undefined;
  }

  async function showPublisherPage(req: Request, res: Response) {
    const c = await linked(req, res);
    if (!c) return;
    const processor = deps.processors.list().find((p) => p.descriptor.id === c.esp);
    const { runs } = await runHistory(deps.stores.blobs, c.id, { limit: RECENT_RUNS });
    const disconnected = c.status === 'disabled' && c.statusReason === DISCONNECTED_BY_PUBLISHER;
    const reconnect = processor
      ? `/auth/${encodeURIComponent(c.esp)}/${processor.descriptor.oauth2 ? 'start' : 'key'}?reauthorize=${c.id}`
      : undefined;
    const status = disconnected
      ? 'Disconnected: espresso holds no credentials for this account and does not run.'
      : c.status === 'needs_reauth'
        ? `Needs you to sign in again: the ESP no longer accepts espresso's access.${reconnect ? ` <a id="reconnect" href="${escapeHtml(reconnect)}">Reconnect</a>` : ''}`
        : c.status === 'disabled'
          ? 'Paused by an operator.'
          : 'Connected: espresso fills the field every day.';
    const rows = runs
      .filter((s) => !s.dryRun)
      .map(
        (s) =>
          `<tr><td>${escapeHtml(s.startedAt.slice(0, 10))}</td><td>${escapeHtml(s.status)}</td><td>${s.contacts.updated}</td><td>${s.contacts.rejected}</td></tr>`,
      );
    const tag = processor ? `lctg=${processor.descriptor.mergeTag(c.fieldName)}` : undefined;
    res.send(
      page(
        c.accountLabel,
        `<h1>${escapeHtml(c.accountLabel)}</h1>
<p id="connection">${status}</p>
${tag ? `<p>Put this in every newsletter link: <span class="tag" id="merge-tag">${escapeHtml(tag)}</span></p>` : ''}
<h2>Recent runs</h2>
${rows.length ? `<table id="runs"><tr><th>Day</th><th>Status</th><th>Contacts updated</th><th>Rejected</th></tr>${rows.join('')}</table>` : '<p>No run yet.</p>'}
${disconnected ? '' : `<p><a id="disconnect" href="${escapeHtml(`${req.path}/disconnect`)}">Disconnect</a></p>`}
<p class="muted">This page is private: anyone with its link sees it.</p>`,
      ),
    );
  }

  async function confirmDisconnect(req: Request, res: Response) {
    const c = await linked(req, res);
    if (!c) return;
    res.send(
      page(
        'Disconnect',
        `<h1>Disconnect ${escapeHtml(c.accountLabel)}?</h1>
<p>espresso deletes its credentials for this account and stops its daily runs. Values already written stay in your ESP.</p>
<form method="post" action="${escapeHtml(req.path)}">${hidden('_csrf', csrfToken(req, res, signer, secure))}<button type="submit">Disconnect</button></form>
<p><a href="${escapeHtml(req.path.replace(/\/disconnect$/, ''))}">Cancel</a></p>`,
      ),
    );
  }

  async function disconnect(req: Request, res: Response) {
    if (!csrfValid(req, signer, secure)) return formExpired(res);
    const c = await linked(req, res);
    if (!c) return;
    // Disabled first: no run starts without credentials to use. An operator's disable is kept as
    // theirs, so that connecting the account again does not resume it.
    await deps.stores.configurations.update(c.id, (x) => ({
      status: 'disabled',
      statusReason: disabledByOperator(x) ? x.statusReason : DISCONNECTED_BY_PUBLISHER,
    }));
    await deps.stores.secrets.delete(c.credentialsSecretId);
    await recordAudit(deps.stores.blobs, {
      actor: `publisher ${c.esp} account ${c.espAccountId}`,
      action: 'disconnect',
      configurationId: c.id,
      address: req.ip ?? '',
    });
    res.send(
      page(
        'Disconnected',
        `<h1>Disconnected</h1><p>espresso no longer holds credentials for ${escapeHtml(c.accountLabel)} and does not run for it.</p>`,
        { kind: 'ok' },
      ),
    );
  }

  router.get('/publisher/:id/:token', showPublisherPage);
  router.get('/publisher/:id/:token/disconnect', confirmDisconnect);
  router.post('/publisher/:id/:token/disconnect', postLimiter, disconnect);
  return router;
}
