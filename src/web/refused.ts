import type { Response } from 'express';
import { h, page } from './pages';

/** 409: the action cannot be done now, and why, with the way back. */
export function refused(res: Response, title: string, why: string): void {
  res
    .status(409)
    .send(
      page(
        title,
        `<h1>${h(title)}</h1><p>${h(why)}.</p><p><a href="/admin">Back to the configurations</a></p>`,
        { kind: 'error' },
      ),
    );
}
