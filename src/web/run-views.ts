// HTML of the run history pages (src/web/run-routes.ts): a configuration's runs, and one run.
// Every value goes through `escapeHtml`.
import type { RunSummary } from '../runs/summaries';
import { runNotes } from '../runs/report';
import type { RejectedPage } from '../runs/results';
import type { Configuration } from '../storage';
import type { SyncProgress } from '../workflows/configuration-run';
import { escapeHtml, hidden } from './pages';

/** The run writing (or dry-running) a configuration now, and what its `progress` query answered. */
export interface RunningRun {
  workflowId: string;
  url: string;
  progress?: SyncProgress;
  /** Why the progress is not shown (Temporal did not answer in time). */
  problem?: string;
  /** Why the run may not be making progress (its account lock expired). */
  stalled?: string;
}

export function duration(ms: number): string {
  if (ms < 1000) return `${ms} ms`;
  const s = Math.round(ms / 1000);
  return s < 60 ? `${s} s` : `${Math.floor(s / 60)} min ${s % 60} s`;
}

export const configurationPath = (id: string) => `/admin/configurations/${encodeURIComponent(id)}`;
export const runPath = (id: string, folder: string) =>
  `${configurationPath(id)}/runs/${encodeURIComponent(folder)}`;

export function runningBox(running: RunningRun | undefined): string {
  if (!running) return '<p class="muted" id="running">No run in progress.</p>';
  const p = running.progress;
  const facts = p
    ? `phase ${escapeHtml(p.phase)} · chunks ${p.chunksDone} of ${p.chunksTotal} · exported ${p.contactsExported} · updated ${p.updated} · rejected ${p.rejected}`
    : escapeHtml(running.problem ?? 'no progress yet');
  return `<div class="box" id="running"><strong>Running now</strong>: <a href="${escapeHtml(running.url)}">${escapeHtml(running.workflowId)}</a><br>
<span id="progress">${facts}</span><br>${running.stalled ? `<span id="stalled">${escapeHtml(running.stalled)}</span><br>` : ''}<span class="muted">This page refreshes every 5 seconds while a run is in progress.</span></div>`;
}

function runStatus(s: RunSummary): string {
  return `${escapeHtml(s.status)}${s.dryRun ? ' (dry run)' : ''}`;
}

export function historyTable(configurationId: string, runs: RunSummary[], urlOf: (s: RunSummary) => string) {
  if (runs.length === 0) return '<p id="no-runs">No finished run yet.</p>';
  const rows = runs.map(
    (s) => `<tr data-run="${escapeHtml(s.run)}">
<td><a href="${escapeHtml(runPath(configurationId, s.run))}">${escapeHtml(s.run)}</a></td>
<td>${escapeHtml(s.startedAt.replace('T', ' ').slice(0, 19))}</td><td>${escapeHtml(s.mode)}</td><td class="status">${runStatus(s)}</td>
<td>${s.contacts.exported} / ${s.contacts.updated} / ${s.contacts.rejected}</td>
<td>${duration(s.durationsMs.total)}</td><td><a href="${escapeHtml(urlOf(s))}">Temporal</a></td></tr>`,
  );
  return `<table id="runs"><tr><th>Run</th><th>Started (UTC)</th><th>Mode</th><th>Status</th><th>Exported / updated / rejected</th><th>Took</th><th></th></tr>${rows.join('')}</table>`;
}

export function configurationHeading(c: Configuration, espName: string): string {
  return `<p class="muted"><a href="/admin">Configurations</a></p>
<h1>${escapeHtml(c.accountLabel)}</h1>
<p>${escapeHtml(espName)}${c.espListId ? ` · ${escapeHtml(c.espListId)}` : ''} · <code>${escapeHtml(c.id)}</code> · status <strong id="status">${escapeHtml(c.status)}</strong></p>`;
}

export function runFacts(s: RunSummary, temporalUrl: string): string {
  const d = s.durationsMs;
  const notes = runNotes(s);
  return `<table id="facts">
<tr><th>Status</th><td class="status">${runStatus(s)}${s.reason ? `<br><span class="muted">${escapeHtml(s.reason)}</span>` : ''}</td></tr>
<tr><th>Mode</th><td>${escapeHtml(s.mode)}</td></tr>
<tr><th>Started · finished (UTC)</th><td>${escapeHtml(s.startedAt)} · ${escapeHtml(s.finishedAt)}</td></tr>
<tr><th>Took</th><td>${duration(d.total)} (maintenance ${duration(d.maintenance)}, export ${duration(d.export)}, dispatch ${duration(d.dispatch)})</td></tr>
<tr><th>Contacts</th><td>exported ${s.contacts.exported}, already set ${s.contacts.alreadySet}, updated <span id="updated">${s.contacts.updated}</span>, rejected <span id="rejected">${s.contacts.rejected}</span></td></tr>
${notes.length ? `<tr><th>Notes</th><td>${notes.map(escapeHtml).join('<br>')}</td></tr>` : ''}
<tr><th>Temporal</th><td><a href="${escapeHtml(temporalUrl)}">${escapeHtml(s.workflowId)}</a></td></tr>
</table>`;
}

export function rejectionsByKind(s: RunSummary): string {
  const kinds = Object.entries(s.rejectedByKind).sort((a, b) => b[1] - a[1]);
  if (kinds.length === 0) return '<p id="kinds">No rejections.</p>';
  return `<table id="kinds"><tr><th>Rejection kind</th><th>Contacts</th></tr>${kinds
    .map(([kind, n]) => `<tr><td><code>${escapeHtml(kind)}</code></td><td>${n}</td></tr>`)
    .join('')}</table>`;
}

export function rejectedTable(page: RejectedPage, contact: string, nextUrl: string | undefined): string {
  const search = `<form method="get" class="search" id="contact-search">
<input type="search" name="contact" value="${escapeHtml(contact)}" placeholder="contact id" aria-label="contact id">
<button type="submit">Find contact</button></form>`;
  if (page.rows.length === 0)
    return `${search}<p id="no-rejected">${contact ? 'No rejected row of this contact.' : 'No rejected rows.'}</p>`;
  const rows = page.rows.map(
    (
      r,
    ) => `<tr data-contact="${escapeHtml(r.contactId)}"><td>${r.chunk}:${r.line}</td><td><code>${escapeHtml(r.contactId)}</code></td>
<td><code>${escapeHtml(r.kind ?? '')}</code></td><td>${escapeHtml(r.reason ?? '')}</td></tr>`,
  );
  return `${search}<table id="rejected"><tr><th>Chunk:line</th><th>Contact</th><th>Kind</th><th>Reason</th></tr>${rows.join('')}</table>
${nextUrl ? `<p><a id="next-page" href="${escapeHtml(nextUrl)}">More rejected rows →</a></p>` : ''}`;
}

export function retryConfirm(s: RunSummary, csrf: string, action: string): string {
  const left = Math.max(0, s.contacts.exported - s.contacts.updated);
  return `<h1>Retry the failed rows of run ${escapeHtml(s.run)}?</h1>
<p>A new run writes this run's values again to its ${left} ${left === 1 ? 'contact' : 'contacts'} that were not updated and still have no value in the ESP. Contacts that hold a value keep it.</p>
<form method="post" action="${escapeHtml(action)}">${hidden('_csrf', csrf)}<button type="submit">Start the retry</button></form>
<p><a href="${escapeHtml(runPath(s.configurationId, s.run))}">Cancel</a></p>`;
}
