// The Sandbox's admin API (/_sandbox, test mode only), behind its admin token: accounts, their
// settings (limits, faults, sizes), seeding and suppressing contacts, expiring tokens, revoking
// grants, resetting the statistics. What it shows is in inspection-routes.ts.
import type { IncomingMessage } from 'node:http';
import { Router, type NextFunction, type Response } from 'express';
import { z } from 'zod';
import { constantTimeEqual } from '../lib/constant-time-equal';
import { HttpError, parse, respondError, route, type RouteContext } from './http';
import { applySettings, settingsSchema } from './settings';
import { SandboxList, type SandboxAccount, type SandboxState } from './state';
import type { SandboxStats } from './stats';

/** Every /_sandbox request, routed or not, needs the admin token (compared in constant time). */
export function requireAdminToken(adminToken: string) {
  return (req: IncomingMessage, res: Response, next: NextFunction): void => {
    const header = req.headers.authorization ?? '';
    const presented = header.startsWith('Bearer ') ? header.slice('Bearer '.length) : '';
    if (constantTimeEqual(presented, adminToken)) return next();
    respondError(
      res,
      new HttpError(
        401,
        'unauthenticated',
        'the Sandbox admin API needs its admin token (Authorization: Bearer <token>)',
        {},
        { 'www-authenticate': 'Bearer realm="sandbox-admin"' },
      ),
    );
  };
}

export function adminAccount(state: SandboxState, id: string): SandboxAccount {
  const account = state.accounts.get(id);
  if (!account) throw new HttpError(404, 'account_not_found', `account ${id} does not exist`);
  return account;
}

export function adminList(state: SandboxState, ctx: RouteContext): SandboxList {
  const { accountId, listId } = ctx.params as { accountId: string; listId: string };
  const l = adminAccount(state, accountId).lists.get(listId);
  if (!l) throw new HttpError(404, 'list_not_found', `list ${listId} does not exist`);
  return l;
}

const idSchema = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/);

/** Routes under /_sandbox (mounted there, after requireAdminToken). */
export function adminRoutes(state: SandboxState, stats: Map<string, SandboxStats>): Router {
  const router = Router({ caseSensitive: true, strict: true });
  const account = (ctx: RouteContext) => adminAccount(state, ctx.params.accountId!);

  router.post(
    '/stats/reset',
    route(() => (stats.clear(), { ok: true })),
  );
  router.post('/accounts', route(createAccount));
  router.patch(
    '/accounts/:accountId/settings',
    route((ctx) => {
      const a = account(ctx);
      a.settings = applySettings(a.settings, parse(settingsSchema, ctx.body));
      return a.settings;
    }),
  );
  router.post(
    '/accounts/:accountId/lists/:listId/seed',
    route((ctx) => {
      const a = account(ctx);
      const body = parse(z.object({ contacts: z.number().int().min(1).max(50_000_000) }), ctx.body);
      const seeded = state.seed(a.id, ctx.params.listId!, body.contacts);
      return { list: seeded.id, size: seeded.size };
    }),
  );
  router.post(
    '/accounts/:accountId/lists/:listId/suppress',
    route((ctx) => {
      const target = adminList(state, ctx);
      const body = parse(z.object({ contactIds: z.array(z.string()) }), ctx.body);
      for (const id of body.contactIds) {
        const index = SandboxList.indexOf(id);
        if (!target.has(index)) throw new HttpError(400, 'unknown_contact', `contact ${id} does not exist`);
        target.suppressed.add(index);
      }
      return { suppressed: target.suppressed.size };
    }),
  );
  router.post(
    '/accounts/:accountId/expire-access-tokens',
    route((ctx) => (state.expireAccessTokens(account(ctx).id), { ok: true })),
  );
  router.post(
    '/accounts/:accountId/revoke-grants',
    route((ctx) => (state.revokeGrants(account(ctx).id), { ok: true })),
  );
  return router;

  function createAccount(ctx: RouteContext) {
    const body = parse(
      z.object({
        id: idSchema,
        name: z.string().min(1).max(200),
        apiKeys: z.array(z.string().min(8)).default([]),
        lists: z.array(z.object({ id: idSchema, name: z.string() })).default([]),
        settings: settingsSchema.default({}),
      }),
      ctx.body,
    );
    if (state.accounts.has(body.id)) throw new HttpError(409, 'account_exists', `account ${body.id} exists`);
    const created = state.addAccount(body.id, body.name, body.apiKeys);
    created.settings = applySettings(created.settings, body.settings);
    for (const l of body.lists) created.lists.set(l.id, new SandboxList(l.id, l.name));
    ctx.res.statusCode = 201;
    return { id: created.id };
  }
}
