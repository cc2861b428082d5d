// /admin: every configuration with its last run, and what an operator does with one.
import { Router, type RequestHandler } from 'express';
import type { RunSummary } from '../runs/summaries';
import { adminActor, recordAudit } from '../audit/log';
import { ConnectError, setEnabled } from '../connect';
import { runNotes } from '../runs/report';
import { latestSummary } from '../runs/summaries';
import { z } from 'zod';
import {
  configurationIdSchema,
  isUnreadable,
  NotFoundError,
  type Configuration,
  type ListedConfigurationDocument,
  type UnreadableConfiguration,
} from '../storage';
import { RunInProgressError, startConfigurationRun, today } from '../temporal/runs';
import type { WebDeps } from './deps';
import { temporalClient } from './temporal-client';
import { escapeHtml, hidden, page } from './pages';
import type { FailedAuthGuard } from './failed-auth';
import { adminAuth } from './admin-auth';
import { auditRoutes, recentActions } from './audit-routes';
import { revokeLinks } from '../publisher-link';
import { refused } from './refused';
import { runRoutes, temporalRunUrl } from './run-routes';
import { configurationPath, runPath } from './run-views';
import { formExpired } from './error-pages';
import { csrfToken, csrfValid, type Signer } from './security';

const ACTIONS = ['run', 'dry-run', 'disable', 'enable', 'revoke-link'] as const;
const PAGE_SIZE = 50;
const STATUSES = ['active', 'needs_reauth', 'disabled', 'unreadable'] as const;
const adminQuery = z.object({
  q: z.string().trim().max(200).optional(),
  esp: z.string().trim().max(40).optional(),
  status: z.enum(STATUSES).or(z.literal('')).optional(),
  after: configurationIdSchema.optional(),
  done: z.string().optional(),
});
type AdminQuery = z.infer<typeof adminQuery>;

/** Search: id, account (label or id) or list contain `q`; ESP and status are exact. */
function matches(c: ListedConfigurationDocument, query: AdminQuery): boolean {
  if (isUnreadable(c))
    return (
      (!query.status || query.status === 'unreadable') && !query.esp && (!query.q || c.id.includes(query.q))
    );
  if (query.status && c.status !== query.status) return false;
  if (query.esp && c.esp !== query.esp) return false;
  if (!query.q) return true;
  const q = query.q.toLowerCase();
  return [c.id, c.accountLabel, c.espAccountId, c.espListId ?? ''].some((x) => x.toLowerCase().includes(q));
}

function clean(query: AdminQuery): Record<string, string> {
  const out: Record<string, string> = {};
  for (const key of ['q', 'esp', 'status'] as const) if (query[key]) out[key] = query[key]!;
  return out;
}

/** The newest run of a configuration whose document predates `lastRun`, from its summary file. */
function fromSummary(summary: RunSummary | undefined): Configuration['lastRun'] {
  return (
    summary && {
      status: summary.status,
      run: summary.run,
      workflowId: summary.workflowId,
      finishedAt: summary.finishedAt,
      dryRun: summary.dryRun,
      updated: summary.contacts.updated,
      rejected: summary.contacts.rejected,
      reason: summary.reason,
      notes: runNotes(summary),
    }
  );
}
type Action = (typeof ACTIONS)[number];
const DONE: Record<Action, string> = {
  run: 'Run started.',
  'dry-run': 'Dry run started: nothing will be written to the ESP.',
  disable: 'Configuration disabled: daily runs skip it.',
  enable: 'Configuration enabled.',
  'revoke-link': "Publisher link revoked: the links given out no longer open the publisher's page.",
};

export function adminRoutes(
  deps: WebDeps,
  signer: Signer,
  postLimiter: RequestHandler,
  failedAuth: FailedAuthGuard,
) {
  const router = Router();
  const secure = deps.web.publicUrl.startsWith('https://');
  router.use('/admin', adminAuth(deps.web.admin, failedAuth));
  router.use(runRoutes(deps, signer, postLimiter));
  router.use(auditRoutes(deps.stores.blobs));

  router.get('/admin', async (req, res) => {
    const query = adminQuery.safeParse(req.query);
    if (!query.success)
      return void res.status(400).send(
        page(
          'Invalid request',
          `<h1>Invalid request</h1><p>${escapeHtml(query.error.issues[0]!.message)}</p>`,
          {
            kind: 'error',
          },
        ),
      );
    const { q, esp, status, after } = query.data;
    const filtered = !!(q || esp || status);
    const { items, next } = await deps.stores.configurations.page({
      after,
      limit: PAGE_SIZE,
      ...(filtered ? { match: (c: ListedConfigurationDocument) => matches(c, query.data) } : {}),
    });
    const csrf = csrfToken(req, res, signer, secure);
    const rows = await Promise.all(items.map((c) => (isUnreadable(c) ? unreadableRow(c) : row(c, csrf))));
    const done = ACTIONS.find((a) => a === req.query.done);
    const nextUrl = next ? `/admin?${new URLSearchParams({ ...clean(query.data), after: next })}` : '';
    res.send(
      page(
        'Admin',
        `<h1>Configurations</h1>
${done ? `<div class="box ok" id="flash">${escapeHtml(DONE[done])}</div>` : ''}
<form method="get" action="/admin" class="search">
  <input type="search" name="q" value="${escapeHtml(q ?? '')}" placeholder="id, account or list" aria-label="search by id, account or list">
  <input type="text" name="esp" value="${escapeHtml(esp ?? '')}" placeholder="ESP" aria-label="ESP" size="10">
  <select name="status" aria-label="status">${['', ...STATUSES].map((st) => `<option value="${escapeHtml(st)}"${st === (status ?? '') ? ' selected' : ''}>${st ? escapeHtml(st) : 'any status'}</option>`).join('')}</select>
  <button type="submit">Search</button>
</form>
${
  items.length === 0
    ? filtered || after
      ? '<p>No configuration matches on this page.</p>'
      : '<p>No configurations yet. Publishers connect on <a href="/">the start page</a>.</p>'
    : `<table><tr><th>Configuration</th><th>Status</th><th>Last run</th><th>Actions</th></tr>${rows.join('')}</table>`
}
<p>${after ? '<a href="/admin">First page</a>' : ''}${nextUrl ? ` <a id="next-page" href="${escapeHtml(nextUrl)}">Next ${PAGE_SIZE} →</a>` : ''}</p>
${await recentActions(deps.stores.blobs)}
<p class="muted"><a href="${escapeHtml(deps.temporalUiUrl)}">Temporal Web UI</a></p>`,
      ),
    );
  });

  router.post('/admin/configurations/:id/:action', postLimiter, async (req, res) => {
    if (!csrfValid(req, signer, secure)) return formExpired(res);
    const id = configurationIdSchema.safeParse(req.params.id);
    const action = ACTIONS.find((a) => a === req.params.action);
    if (!id.success || !action)
      return void res.status(404).send(page('Not found', '<h1>Not found</h1>', { kind: 'error' }));
    try {
      await deps.stores.configurations.get(id.data);
    } catch (err) {
      if (err instanceof NotFoundError)
        return void res
          .status(404)
          .send(page('Not found', '<h1>No such configuration</h1>', { kind: 'error' }));
      throw err;
    }
    let detail: string | undefined;
    if (action === 'revoke-link') {
      await revokeLinks(deps.stores.blobs, id.data);
    } else if (action === 'disable' || action === 'enable') {
      try {
        await setEnabled(
          { ...deps, alerts: deps.alerts ?? (async () => undefined) },
          id.data,
          action === 'enable',
        );
      } catch (err) {
        if (!(err instanceof ConnectError)) throw err;
        return refused(res, 'Still not authorized', err.message);
      }
    } else {
      const client = await temporalClient(deps);
      try {
        detail = (
          await startConfigurationRun(
            client,
            deps.stores,
            { configurationId: id.data, runDate: today(), mode: 'incremental', dryRun: action === 'dry-run' },
            action === 'dry-run' ? 'dry-run' : 'manual',
          )
        ).workflowId;
      } catch (err) {
        if (!(err instanceof RunInProgressError)) throw err;
        return refused(res, 'A run is in progress', err.message);
      }
    }
    await recordAudit(deps.stores.blobs, {
      actor: adminActor(req.headers.authorization),
      action,
      configurationId: id.data,
      ...(detail ? { detail } : {}),
      address: req.ip ?? '',
    });
    // A fixed route: never a target taken from the request.
    res.redirect(303, `/admin?done=${action}`);
  });

  /** A configuration's row: its newest run comes from its own document (older ones: its summary file). */
  async function row(c: Configuration, csrf: string): Promise<string> {
    const processor = deps.processors.list().find((p) => p.descriptor.id === c.esp);
    const reauthPath = processor?.descriptor.oauth2 ? 'start' : 'key';
    const reauthLink = `${deps.web.publicUrl}/auth/${encodeURIComponent(c.esp)}/${reauthPath}?reauthorize=${c.id}`;
    const last = c.lastRun ?? fromSummary(await latestSummary(deps.stores.blobs, c.id));
    const run = last
      ? `${escapeHtml(last.status)}${last.dryRun ? ' (dry run)' : ''} · ${escapeHtml(last.run)}<br>updated ${last.updated}, rejected ${last.rejected}${last.notes?.length ? `<br>${last.notes.map(escapeHtml).join('<br>')}` : ''}${last.reason ? `<br><span class="muted">${escapeHtml(last.reason)}</span>` : ''}<br>${last.status === 'busy' ? '' : `<a class="run" href="${escapeHtml(runPath(c.id, last.run))}">run details</a> · `}<a href="${escapeHtml(temporalRunUrl(deps, last.workflowId))}">open in Temporal</a>`
      : '<span class="muted">no run yet</span>';
    const button = (action: Action, label: string) =>
      `<form class="inline" method="post" action="/admin/configurations/${escapeHtml(c.id)}/${action}">${hidden('_csrf', csrf)}<button type="submit">${label}</button></form>`;
    return `<tr data-configuration="${escapeHtml(c.id)}">
<td><strong>${escapeHtml(c.accountLabel)}</strong><br>${escapeHtml(processor?.descriptor.displayName ?? c.esp)}${c.espListId ? ` · ${escapeHtml(c.espListId)}` : ''}<br><a class="configuration" href="${escapeHtml(configurationPath(c.id))}"><code>${escapeHtml(c.id)}</code></a></td>
<td class="status">${escapeHtml(c.status)}${c.statusReason ? `<br><span class="muted">${escapeHtml(c.statusReason)}</span>` : ''}</td>
<td>${run}</td>
<td>${button('run', 'Run now')} ${button('dry-run', 'Dry run')} ${c.status === 'disabled' ? button('enable', 'Enable') : button('disable', 'Disable')}
<p class="muted">Re-authorization link:<br><input type="text" readonly value="${escapeHtml(reauthLink)}" aria-label="re-authorization link"></p></td>
</tr>`;
  }

  function unreadableRow(c: UnreadableConfiguration): string {
    return `<tr data-configuration="${escapeHtml(c.id)}" class="unreadable">
<td><code>${escapeHtml(c.id)}</code></td>
<td class="status">unreadable<br><span class="muted">${escapeHtml(c.unreadable)}</span></td>
<td><span class="muted">skipped every day until its document is fixed</span></td>
<td></td>
</tr>`;
  }

  return router;
}
