// Error pages: every page that says a request was refused or failed is written by errorPage.
import type { Response } from 'express';
import type { z } from 'zod';
import { escapeHtml, page } from './pages';

/** Answers `status` with an error page: `body` is HTML (values escaped with `escapeHtml`), its heading included. */
export function errorPage(res: Response, status: number, title: string, body: string): void {
  res.status(status).send(page(title, body, { kind: 'error' }));
}

/** 403: a form posted without its session's CSRF token (or after the session changed). */
export function formExpired(res: Response): void {
  errorPage(
    res,
    403,
    'Form expired',
    '<h1>This form has expired</h1><p>Please go back, reload the page and submit it again.</p>',
  );
}

/** 400: the first problem zod found in a query or a form, naming its field. */
export function badRequest(res: Response, error: z.ZodError): void {
  const issue = error.issues[0]!;
  const field = issue.path.join('.') || 'request';
  errorPage(
    res,
    400,
    'Invalid request',
    `<h1>Invalid request</h1><p><code>${escapeHtml(field)}</code>: ${escapeHtml(issue.message)}</p>`,
  );
}
