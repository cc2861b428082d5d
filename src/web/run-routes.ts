// /admin/configurations/<id>: a configuration's runs, newest first, and the run in progress;
// /admin/configurations/<id>/runs/<run>: one run's rejections, its results to download, and
// "retry failed rows". Mounted behind the admin sign-in (src/web/admin-routes.ts).
import { once } from 'node:events';
import { Router, type Request, type RequestHandler, type Response } from 'express';
import { z } from 'zod';
import type { RunSummary } from '../runs/summaries';
import { adminActor, recordAudit } from '../audit/log';
import { withTimeout } from '../lib/timeout';
import { accountLockKey, AccountLocks, LOCK_TTL_MS } from '../runs/account-lock';
import { DryRunFolderError } from '../runs/dry-runs';
import { runFolderSchema } from '../runs/files';
import { historyCursorPattern, runHistory, runSummary } from '../runs/history';
import { checkRedispatchable, NothingToRedispatchError } from '../runs/redispatch';
import { csvHeader, csvLine, jsonLine, rejectedRows, resultCursorPattern, runResults } from '../runs/results';
import { configurationIdSchema, NotFoundError, type Configuration } from '../storage';
import { RunInProgressError, startConfigurationRun, stillRuns, today } from '../temporal/runs';
import type { SyncProgress } from '../workflows/configuration-run';
import type { WebDeps } from './deps';
import { escapeHtml, hidden, page } from './pages';
import { publisherUrl } from '../publisher-link';
import { refused } from './refused';
import * as view from './run-views';
import { formExpired } from './error-pages';
import { csrfToken, csrfValid, type Signer } from './security';
import { temporalClient } from './temporal-client';

const RUNS_PER_PAGE = 20;
const ROWS_PER_PAGE = 50;
const PROGRESS_WAIT_MS = 2_000;
/** Shown for a run whose account lock expired (Temporal says it runs, or did not answer). */
const STALLED = `no worker has run its activities for over ${LOCK_TTL_MS / 60_000} minutes (its account lock expired): are the workers up? espresso doctor checks them`;

const historyQuery = z.object({
  after: z.string().regex(historyCursorPattern, 'not a page of this history').optional(),
  done: z.string().optional(),
});
const runQuery = z.object({
  after: z.string().regex(resultCursorPattern, 'not a page of these rows').optional(),
  contact: z.string().trim().max(200).optional(),
});

/** The Temporal Web UI page of a workflow. */
export function temporalRunUrl(deps: WebDeps, workflowId: string): string {
  return `${deps.temporalUiUrl}/namespaces/${encodeURIComponent(deps.temporalNamespace)}/workflows/${encodeURIComponent(workflowId)}`;
}

function notFound(res: Response, what: string): void {
  res.status(404).send(page('Not found', `<h1>${escapeHtml(what)}</h1>`, { kind: 'error' }));
}

function invalid(res: Response, problem: string): void {
  res
    .status(400)
    .send(
      page('Invalid request', `<h1>Invalid request</h1><p>${escapeHtml(problem)}</p>`, { kind: 'error' }),
    );
}

export function runRoutes(deps: WebDeps, signer: Signer, postLimiter: RequestHandler) {
  const secure = deps.web.publicUrl.startsWith('https://');
  const router = Router();

  /** The configuration named in the path, or undefined once a 404 is sent. */
  async function configurationOf(req: Request, res: Response): Promise<Configuration | undefined> {
    const id = configurationIdSchema.safeParse(req.params.id);
    if (!id.success) return void notFound(res, 'No such configuration');
    try {
      return await deps.stores.configurations.get(id.data);
    } catch (err) {
      if (err instanceof NotFoundError) return void notFound(res, 'No such configuration');
      throw err;
    }
  }

  /** The finished run named in the path, or undefined once a 404 is sent. */
  async function runOf(req: Request, res: Response) {
    const configuration = await configurationOf(req, res);
    if (!configuration) return undefined;
    const folder = runFolderSchema.safeParse(req.params.run);
    const summary = folder.success
      ? await runSummary(deps.stores.blobs, configuration.id, folder.data)
      : undefined;
    if (!summary) return void notFound(res, 'No finished run of this name');
    return { configuration, summary };
  }

  /**
   * The run holding the configuration's ESP account for it, with its live progress. One whose lock
   * expired is shown while Temporal says it runs, saying so: no worker has run its activities.
   */
  async function runningRun(c: Configuration): Promise<view.RunningRun | undefined> {
    const held = await new AccountLocks(deps.stores.blobs).holder(accountLockKey(c.esp, c.espAccountId));
    if (held?.owner.configurationId !== c.id) return undefined;
    const { workflowId } = held.owner;
    const running: view.RunningRun = { workflowId, url: temporalRunUrl(deps, workflowId) };
    try {
      const client = await temporalClient(deps);
      if (held.expired) {
        running.stalled = STALLED;
        const runs = stillRuns(client, held.owner);
        if (!(await withTimeout(runs, PROGRESS_WAIT_MS, 'Temporal did not answer in time'))) return undefined;
      }
      const query = client.workflow.getHandle(workflowId).query<SyncProgress>('progress');
      running.progress = await withTimeout(query, PROGRESS_WAIT_MS, 'Temporal did not answer in time');
    } catch (err) {
      running.problem = `progress unavailable: ${(err as Error).message.slice(0, 200)}`;
    }
    return running;
  }

  async function showConfiguration(req: Request, res: Response) {
    const query = historyQuery.safeParse(req.query);
    if (!query.success) return invalid(res, query.error.issues[0]!.message);
    const c = await configurationOf(req, res);
    if (!c) return;
    const [history, running] = await Promise.all([
      runHistory(deps.stores.blobs, c.id, { after: query.data.after, limit: RUNS_PER_PAGE }),
      runningRun(c),
    ]);
    const espName = deps.processors.list().find((p) => p.descriptor.id === c.esp)?.descriptor.displayName;
    const base = view.configurationPath(c.id);
    const link = await publisherUrl(deps.stores, deps.web.publicUrl, c.id);
    const revoke = `<form class="inline" method="post" action="${escapeHtml(`${base}/revoke-link`)}">${hidden('_csrf', csrfToken(req, res, signer, secure))}<button type="submit">Revoke</button></form>`;
    const flash =
      query.data.done === 'retry'
        ? '<div class="box ok" id="flash">Retry of the failed rows started.</div>'
        : '';
    const body = `${view.configurationHeading(c, espName ?? c.esp)}${flash}
<p class="muted">Publisher's private page: <input type="text" readonly id="publisher-link" value="${escapeHtml(link)}" aria-label="publisher link"> ${revoke}</p>
${view.runningBox(running)}
<h2>Runs</h2>
${view.historyTable(c.id, history.runs, (s) => temporalRunUrl(deps, s.workflowId))}
<p>${query.data.after ? `<a href="${escapeHtml(base)}">Newest runs</a>` : ''}${history.next ? ` <a id="older" href="${escapeHtml(`${base}?${new URLSearchParams({ after: history.next })}`)}">Older runs →</a>` : ''}</p>`;
    // While a run is in progress the page reloads; just after a start, the run may not hold its
    // account yet, so the page looks again (without the notice) in a moment.
    const refresh = running ? { seconds: 5 } : query.data.done ? { seconds: 2, url: base } : undefined;
    res.send(page(c.accountLabel, body, undefined, refresh ? { refresh } : {}));
  }

  async function showRun(req: Request, res: Response) {
    const query = runQuery.safeParse(req.query);
    if (!query.success) return invalid(res, query.error.issues[0]!.message);
    const found = await runOf(req, res);
    if (!found) return;
    const { configuration: c, summary: s } = found;
    const { after, contact = '' } = query.data;
    // A completed run that counted no rejection has no rejected row: its results are not read (a
    // million lines take seconds to find none in). Other runs may hold results they did not count.
    const rejected =
      s.status === 'completed' && s.contacts.rejected === 0
        ? { rows: [] }
        : await rejectedRows(deps.stores.blobs, c.id, s.run, {
            after,
            limit: ROWS_PER_PAGE,
            ...(contact ? { contactId: contact } : {}),
          });
    const base = view.runPath(c.id, s.run);
    const next = rejected.next
      ? `${base}?${new URLSearchParams({ ...(contact ? { contact } : {}), after: rejected.next })}`
      : undefined;
    const retry = retryable(s)
      ? ` · <a id="retry" href="${escapeHtml(`${base}/retry`)}">Retry failed rows</a>`
      : '';
    const body = `<p class="muted"><a href="/admin">Configurations</a> › <a href="${escapeHtml(view.configurationPath(c.id))}">${escapeHtml(c.accountLabel)}</a></p>
<h1>Run ${escapeHtml(s.run)}</h1>
${view.runFacts(s, temporalRunUrl(deps, s.workflowId))}
<p>Results: <a id="csv" href="${escapeHtml(`${base}/results.csv`)}">CSV</a> · <a id="jsonl" href="${escapeHtml(`${base}/results.jsonl`)}">JSONL</a>${retry}</p>
<h2>Rejections by kind</h2>
${view.rejectionsByKind(s)}
<h2>Rejected rows</h2>
${view.rejectedTable(rejected, contact, next)}`;
    res.send(page(`Run ${s.run}`, body));
  }

  /** Streams every result line of the run, email addresses and secrets left out. */
  function download(format: 'csv' | 'jsonl') {
    return async function downloadResults(req: Request, res: Response) {
      const found = await runOf(req, res);
      if (!found) return;
      const { configuration: c, summary: s } = found;
      res.type(format === 'csv' ? 'text/csv' : 'application/jsonl');
      res.attachment(`${c.id}-${s.run}-results.${format}`);
      const line = format === 'csv' ? csvLine : jsonLine;
      if (format === 'csv') res.write(csvHeader);
      try {
        for await (const row of runResults(deps.stores.blobs, c.id, s.run)) {
          if (!res.write(line(row))) await once(res, 'drain');
        }
        res.end();
      } catch (err) {
        // Headers are gone: cutting the response is how the client learns the file is incomplete.
        deps.log?.error({ err: (err as Error).message }, 'results download failed');
        res.destroy();
      }
    };
  }

  async function confirmRetry(req: Request, res: Response) {
    const found = await runOf(req, res);
    if (!found) return;
    const { summary: s } = found;
    if (!retryable(s))
      return refused(res, 'Nothing to retry', `run ${s.run} has no failed rows to write again`);
    const action = `${view.runPath(s.configurationId, s.run)}/retry`;
    res.send(page('Retry failed rows', view.retryConfirm(s, csrfToken(req, res, signer, secure), action)));
  }

  async function startRetry(req: Request, res: Response) {
    if (!csrfValid(req, signer, secure)) return formExpired(res);
    const found = await runOf(req, res);
    if (!found) return;
    const { configuration: c, summary: s } = found;
    try {
      if (!retryable(s)) throw new NothingToRedispatchError(`run ${s.run} has no failed rows to write again`);
      await checkRedispatchable(deps.stores.blobs, c.id, s.run);
      const started = await startConfigurationRun(
        await temporalClient(deps),
        deps.stores,
        { configurationId: c.id, runDate: today(), mode: 'incremental', dryRun: false, retryOf: s.run },
        'redispatch',
      );
      await recordAudit(deps.stores.blobs, {
        actor: adminActor(req.headers.authorization),
        action: 'retry',
        configurationId: c.id,
        detail: `failed rows of run ${s.run}: ${started.workflowId}`,
        address: req.ip ?? '',
      });
    } catch (err) {
      if (err instanceof RunInProgressError) return refused(res, 'A run is in progress', err.message);
      if (err instanceof NothingToRedispatchError || err instanceof DryRunFolderError)
        return refused(res, 'Nothing to retry', err.message);
      throw err;
    }
    // A fixed route: never a target taken from the request.
    res.redirect(303, `${view.configurationPath(c.id)}?done=retry`);
  }

  router.get('/admin/configurations/:id', showConfiguration);
  router.get('/admin/configurations/:id/runs/:run', showRun);
  router.get('/admin/configurations/:id/runs/:run/results.csv', download('csv'));
  router.get('/admin/configurations/:id/runs/:run/results.jsonl', download('jsonl'));
  router.get('/admin/configurations/:id/runs/:run/retry', confirmRetry);
  router.post('/admin/configurations/:id/runs/:run/retry', postLimiter, startRetry);
  return router;
}

/** A run that wrote (not a dry run) and left contacts without their value. */
function retryable(s: RunSummary): boolean {
  return !s.dryRun && s.contacts.updated < s.contacts.exported;
}
