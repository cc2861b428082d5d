// What every Sandbox route shares: its errors and how each is answered, the request body (JSON or
// a form, read by the Sandbox itself), and how a handler's result becomes the response.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Request, Response } from 'express';
import { z } from 'zod';
import { authorizeErrorPage } from './consent-page';

const MAX_BODY_BYTES = 10 * 1024 * 1024;

/** A handler's result when it answered by itself (a redirect, a stream, a request left hanging). */
export const STREAMED = Symbol('streamed');

/** An API error: `{ error: { code, message, ...extra } }` with this status and headers. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly extra: Record<string, unknown> = {},
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

/** A refused authorization request; `back`: where to send it back, when that URI can be trusted. */
export class AuthorizeError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly back?: { redirectUri: string; state: string },
  ) {
    super(message);
  }
}

/** A refused token request, answered as RFC 6749 5.2 says: `{ error }`. */
export class OAuthError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
  ) {
    super(code);
  }
}

/** What a route handler gets: the request's query as the URL has it, its body, its path parameters. */
export interface RouteContext {
  req: Request;
  res: Response;
  params: Record<string, string>;
  query: URLSearchParams;
  body: unknown;
}

export function parse<T>(schema: z.ZodType<T>, body: unknown): T {
  const parsed = schema.safeParse(body);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new HttpError(400, 'invalid_request', `${issue.path.join('.') || 'body'}: ${issue.message}`);
  }
  return parsed.data;
}

export async function readBody(req: IncomingMessage): Promise<unknown> {
  if (req.method === 'GET' || req.method === 'HEAD') return undefined;
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) throw new HttpError(413, 'body_too_large', 'request body over 10 MB');
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (!text) return undefined;
  const type = req.headers['content-type'] ?? '';
  if (type.startsWith('application/x-www-form-urlencoded'))
    return Object.fromEntries(new URLSearchParams(text));
  try {
    return JSON.parse(text);
  } catch {
    throw new HttpError(400, 'invalid_json', 'the body is not valid JSON');
  }
}

/** The context of a matched request: its body read, its query from the URL. */
export async function contextOf(req: Request, res: Response): Promise<RouteContext> {
  const body = await readBody(req);
  const query = new URL(req.originalUrl, 'http://sandbox').searchParams;
  return { req, res, params: req.params as Record<string, string>, query, body };
}

/** A handler's result as the response: text as it is, an object as JSON, nothing as an empty body. */
export function respond(res: ServerResponse, result: unknown): void {
  if (result === STREAMED) return;
  if (typeof result === 'string') {
    res.end(result);
  } else if (result === undefined) {
    res.end();
  } else {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(result));
  }
}

/** An error as the response its kind calls for; an unexpected one says nothing about itself. */
export function respondError(res: ServerResponse, err: unknown): void {
  if (res.headersSent) return void res.destroy();
  if (err instanceof AuthorizeError && err.back) {
    const target = new URL(err.back.redirectUri);
    target.searchParams.set('error', err.code);
    target.searchParams.set('error_description', err.message);
    if (err.back.state) target.searchParams.set('state', err.back.state);
    res.writeHead(302, { location: target.toString() });
    res.end();
  } else if (err instanceof AuthorizeError) {
    res.writeHead(400, { 'content-type': 'text/html; charset=utf-8' });
    res.end(authorizeErrorPage(err.code, err.message));
  } else if (err instanceof OAuthError) {
    res.writeHead(err.status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
    res.end(JSON.stringify({ error: err.code }));
  } else if (err instanceof HttpError) {
    res.writeHead(err.status, { 'content-type': 'application/json', ...err.headers });
    res.end(JSON.stringify({ error: { code: err.code, message: err.message, ...err.extra } }));
  } else {
    res.writeHead(500, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: { code: 'internal', message: 'unexpected sandbox error' } }));
  }
}

/** An Express handler for a route that needs no account: body, handler, response or error. */
export function route(handle: (ctx: RouteContext) => unknown) {
  return async (req: Request, res: Response): Promise<void> => {
    try {
      respond(res, await handle(await contextOf(req, res)));
    } catch (err) {
      respondError(res, err);
    }
  };
}
