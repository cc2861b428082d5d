// /admin/audit: the audit log, newest first, a page at a time; /admin shows its newest entries.
// Mounted behind the admin sign-in (src/web/admin-routes.ts).
import { Router, type Request, type Response } from 'express';
import { z } from 'zod';
import { auditCursorPattern, auditPage, type AuditEntry } from '../audit/log';
import type { BlobStore } from '../storage';
import { escapeHtml, page } from './pages';
import { configurationPath } from './run-views';

const ENTRIES_PER_PAGE = 50;
const auditQuery = z.object({
  after: z.string().regex(auditCursorPattern, 'not a page of the audit log').optional(),
});

export function auditTable(entries: AuditEntry[]): string {
  if (entries.length === 0) return '<p id="no-audit">No action recorded yet.</p>';
  const rows = entries.map(
    (
      e,
    ) => `<tr><td>${escapeHtml(e.at.replace('T', ' ').slice(0, 19))}</td><td>${escapeHtml(e.actor)}</td><td><code>${escapeHtml(e.action)}</code></td>
<td>${e.configurationId ? `<a href="${escapeHtml(configurationPath(e.configurationId))}"><code>${escapeHtml(e.configurationId)}</code></a>` : ''}${e.detail ? `<br><span class="muted">${escapeHtml(e.detail)}</span>` : ''}</td><td>${escapeHtml(e.address)}</td></tr>`,
  );
  return `<table id="audit"><tr><th>When (UTC)</th><th>Who</th><th>Action</th><th>What</th><th>From</th></tr>${rows.join('')}</table>`;
}

/** The newest entries, for /admin. */
export async function recentActions(blobs: BlobStore): Promise<string> {
  const { entries } = await auditPage(blobs, { limit: 10 });
  return `<h2>Recent actions</h2>${auditTable(entries)}<p><a id="audit-log" href="/admin/audit">The whole audit log</a></p>`;
}

export function auditRoutes(blobs: BlobStore) {
  const router = Router();
  router.get('/admin/audit', async function showAudit(req: Request, res: Response) {
    const query = auditQuery.safeParse(req.query);
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
    const { entries, next } = await auditPage(blobs, { after: query.data.after, limit: ENTRIES_PER_PAGE });
    res.send(
      page(
        'Audit log',
        `<p class="muted"><a href="/admin">Configurations</a></p><h1>Audit log</h1>
<p>Every action by an operator (admin page, CLI) or a publisher (connect pages), newest first.</p>
${auditTable(entries)}
<p>${query.data.after ? '<a href="/admin/audit">Newest</a>' : ''}${next ? ` <a id="older" href="${escapeHtml(`/admin/audit?${new URLSearchParams({ after: next })}`)}">Older →</a>` : ''}</p>`,
      ),
    );
  });
  return router;
}
