import type { Response } from 'express';
import { errorPage } from './error-pages';
import { escapeHtml } from './pages';

/** 409: the action cannot be done now, and why, with the way back. */
export function refused(res: Response, title: string, why: string): void {
  errorPage(
    res,
    409,
    title,
    `<h1>${escapeHtml(title)}</h1><p>${escapeHtml(why)}.</p><p><a href="/admin">Back to the configurations</a></p>`,
  );
}
