// The Sandbox's ESP API (/v1): the account, its lists and fields, cursor pages of contacts and
// batch updates with per-row errors. Every request authenticates (Bearer token or X-Api-Key),
// passes the account's limits and faults (api-guard.ts) and is counted (stats.ts).
import type { IncomingMessage } from 'node:http';
import { Router, type Request, type Response } from 'express';
import { z } from 'zod';
import { withinLimitsAndFaults } from './api-guard';
import { contextOf, HttpError, parse, respond, respondError, type RouteContext } from './http';
import { LimitGates, type RequestKind } from './limits';
import { SandboxList, type SandboxAccount, type SandboxState } from './state';
import { countRequest, type SandboxStats } from './stats';

/** A listing request scans at most this many contacts, then returns a (possibly short) page. */
const MAX_SCAN = 50_000;
const FIELD_KEY = /^[a-z][a-z0-9_]{0,29}$/;
const VALUE = /^[A-Za-z0-9_-]{1,64}$/;

interface ApiContext extends RouteContext {
  account: SandboxAccount;
}

export function apiRoutes(state: SandboxState, stats: Map<string, SandboxStats>): Router {
  const gates = new LimitGates();
  const router = Router({ caseSensitive: true, strict: true });

  /** An API handler: authenticated, within limits and faults, counted whatever its answer. */
  const api =
    (handle: (ctx: ApiContext) => unknown, kind: RequestKind = 'other') =>
    async (req: Request, res: Response): Promise<void> => {
      let accountForStats: string | undefined;
      try {
        const ctx = await contextOf(req, res);
        accountForStats = accountIdFrom(req);
        const account = authenticate(req);
        respond(
          res,
          await withinLimitsAndFaults(gates, account, kind, req, () => handle({ ...ctx, account })),
        );
      } catch (err) {
        respondError(res, err);
      } finally {
        if (accountForStats) countRequest(stats, accountForStats, res.statusCode, kind);
      }
    };

  router.get(
    '/v1/account',
    api(({ account }) => ({ id: account.id, name: account.name })),
  );
  router.get(
    '/v1/lists',
    api(({ account }) => ({
      lists: [...account.lists.values()].map((l) => ({ id: l.id, name: l.name, contact_count: l.size })),
    })),
  );
  router.get(
    '/v1/lists/:listId/fields',
    api((ctx) => ({ fields: [...list(ctx).fields.values()] })),
  );
  router.post('/v1/lists/:listId/fields', api(createField));
  router.delete('/v1/lists/:listId/fields/:key', api(deleteField));
  router.get('/v1/lists/:listId/contacts', api(listContacts, 'listing'));
  router.post('/v1/lists/:listId/contacts/batch', api(batchUpdate, 'writing'));
  return router;

  function authenticate(req: IncomingMessage): SandboxAccount {
    const header = req.headers.authorization;
    if (header?.startsWith('Bearer ')) {
      const account = state.accountForAccessToken(header.slice('Bearer '.length));
      if (account === 'expired') throw new HttpError(401, 'token_expired', 'the access token has expired');
      if (account) return account;
      throw new HttpError(401, 'invalid_token', 'the access token is not valid');
    }
    const key = req.headers['x-api-key'];
    if (typeof key === 'string') {
      const account = state.accountForApiKey(key);
      if (account) return account;
      throw new HttpError(401, 'invalid_api_key', 'the API key is not valid');
    }
    throw new HttpError(401, 'unauthenticated', 'send a Bearer token or an X-Api-Key header');
  }

  /** The account a request is for, for statistics only (before authentication decides). */
  function accountIdFrom(req: IncomingMessage): string {
    const header = req.headers.authorization;
    if (header?.startsWith('Bearer ')) {
      const account = state.accountForAccessToken(header.slice(7));
      if (account && account !== 'expired') return account.id;
    }
    const key = req.headers['x-api-key'];
    return (typeof key === 'string' && state.accountForApiKey(key)?.id) || 'unauthenticated';
  }
}

function list(ctx: ApiContext): SandboxList {
  const id = ctx.params.listId!;
  const found = ctx.account.lists.get(id);
  if (!found) throw new HttpError(404, 'list_not_found', `list ${id} does not exist`);
  return found;
}

function createField(ctx: ApiContext) {
  const target = list(ctx);
  const body = parse(z.object({ key: z.string(), label: z.string().max(100).optional() }), ctx.body);
  if (!FIELD_KEY.test(body.key)) {
    throw new HttpError(400, 'invalid_field_key', 'field keys are 1-30 lowercase letters, digits or _');
  }
  if (target.fields.has(body.key)) throw new HttpError(409, 'field_exists', `field ${body.key} exists`);
  const field = { key: body.key, label: body.label ?? body.key, type: 'text' as const };
  target.fields.set(body.key, field);
  ctx.res.statusCode = 201;
  return field;
}

function deleteField(ctx: ApiContext) {
  const target = list(ctx);
  const key = ctx.params.key!;
  if (!target.fields.delete(key)) throw new HttpError(404, 'field_not_found', `field ${key} does not exist`);
  target.values.delete(key);
  ctx.res.statusCode = 204;
  return undefined;
}

function listContacts(ctx: ApiContext) {
  const target = list(ctx);
  const limit = Number(ctx.query.get('limit') ?? 100);
  const { pageSize } = ctx.account.settings;
  if (!Number.isInteger(limit) || limit < 1 || limit > pageSize) {
    throw new HttpError(400, 'invalid_limit', `limit must be 1-${pageSize}`);
  }
  const empty = ctx.query.get('empty');
  if (empty !== null && !target.fields.has(empty)) {
    throw new HttpError(400, 'unknown_field', `field ${empty} does not exist`);
  }
  let start = 0;
  const cursor = ctx.query.get('cursor');
  const offset = ctx.query.get('offset');
  if (cursor && offset !== null)
    throw new HttpError(400, 'invalid_offset', 'give cursor or offset, not both');
  if (cursor) {
    start = Number(Buffer.from(cursor, 'base64url').toString());
    if (!Number.isInteger(start) || start < 0)
      throw new HttpError(400, 'invalid_cursor', 'cursor is not valid');
  }
  if (offset !== null) {
    start = /^\d{1,15}$/.test(offset) ? Number(offset) : -1;
    if (start < 0) throw new HttpError(400, 'invalid_offset', 'offset must be a whole number of contacts');
  }
  const emptyValues = empty === null ? undefined : (target.values.get(empty) ?? []);
  const contacts = [];
  let i = start;
  for (; i < target.size && contacts.length < limit && i - start < MAX_SCAN; i++) {
    if (emptyValues && emptyValues[i] !== undefined) continue;
    const fields: Record<string, string | null> = {};
    for (const key of target.fields.keys()) fields[key] = target.values.get(key)?.[i] ?? null;
    contacts.push({ id: SandboxList.contactId(i), email: target.email(i), fields });
  }
  return {
    contacts,
    next_cursor: i < target.size ? Buffer.from(String(i)).toString('base64url') : null,
    total: target.size,
  };
}

function batchUpdate(ctx: ApiContext) {
  const target = list(ctx);
  const body = ctx.body as { updates?: unknown };
  if (!body || !Array.isArray(body.updates) || body.updates.length === 0) {
    throw new HttpError(400, 'invalid_request', 'updates must be a non-empty array');
  }
  const { batchSize } = ctx.account.settings;
  if (body.updates.length > batchSize) {
    throw new HttpError(413, 'batch_too_large', `at most ${batchSize} updates per request`);
  }
  const updates = body.updates as Array<{ id?: unknown; fields?: Record<string, unknown> }>;
  const unknownRows = updates.flatMap((u, row) =>
    typeof u?.id === 'string' && target.has(SandboxList.indexOf(u.id)) ? [] : [row],
  );
  if (unknownRows.length) {
    throw new HttpError(400, 'unknown_contacts', `${unknownRows.length} contacts do not exist`, {
      rows: unknownRows,
    });
  }
  for (const u of updates) {
    for (const key of Object.keys(u.fields ?? {})) {
      if (!target.fields.has(key)) throw new HttpError(400, 'unknown_field', `field ${key} does not exist`);
    }
  }
  const rejectRate = ctx.account.settings.faults.rowRejectRate;
  const results = updates.map((u) => {
    const id = u.id as string;
    const index = SandboxList.indexOf(id)!;
    const entries = Object.entries(u.fields ?? {});
    const invalid = entries.find(([, v]) => typeof v !== 'string' || !VALUE.test(v));
    if (invalid) {
      return {
        id,
        status: 'error',
        error: { code: 'invalid_value', message: `value of ${invalid[0]} is not 1-64 URL-safe characters` },
      };
    }
    // Deterministic per contact, like a suppressed address: the same contacts fail every time.
    if (
      target.suppressed.has(index) ||
      (rejectRate > 0 && (Math.imul(index + 1, 2654435761) >>> 0) / 2 ** 32 < rejectRate)
    ) {
      return {
        id,
        status: 'error',
        // Named by its address, as real ESPs do ("x@y.com is in a compliance state"): espresso must
        // keep it out of reasons, histories and pages.
        error: {
          code: 'contact_suppressed',
          message: `${target.email(index)} is suppressed and cannot be updated`,
        },
      };
    }
    for (const [key, value] of entries) target.write(key, index, value as string);
    return { id, status: 'updated' };
  });
  return { results };
}
