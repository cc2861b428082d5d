// What the Sandbox's admin API shows (/_sandbox, behind its admin token): its state, the request
// statistics, an account's OAuth grants, and per list and field what was written: a summary with
// conflicts, and the history of every contact ever written.
import { Router } from 'express';
import { adminAccount, adminList } from './admin-routes';
import { HttpError, route, STREAMED, type RouteContext } from './http';
import { SandboxList, type SandboxState } from './state';
import { statsSummary, type SandboxStats } from './stats';

export function inspectionRoutes(state: SandboxState, stats: Map<string, SandboxStats>): Router {
  const router = Router({ caseSensitive: true, strict: true });
  router.get(
    '/state',
    route(() => describeState(state)),
  );
  router.get(
    '/stats',
    route(() => statsSummary(stats)),
  );
  router.get(
    '/stats/:accountId/timeline',
    route((ctx) => {
      const s = stats.get(ctx.params.accountId!);
      if (!s)
        throw new HttpError(404, 'not_found', 'no request of that account counted since the last reset');
      return s.timeline;
    }),
  );
  router.get(
    '/accounts/:accountId/oauth',
    route((ctx) => adminAccount(state, ctx.params.accountId!).oauth),
  );
  router.get(
    '/accounts/:accountId/lists/:listId/summary',
    route((ctx) => summary(adminList(state, ctx), fieldParam(ctx))),
  );
  router.get(
    '/accounts/:accountId/lists/:listId/history',
    route((ctx) => streamHistory(ctx, adminList(state, ctx), fieldParam(ctx))),
  );
  return router;
}

function fieldParam(ctx: RouteContext): string {
  const field = ctx.query.get('field');
  if (!field) throw new HttpError(400, 'missing_field', 'the field query parameter is required');
  return field;
}

function describeState(state: SandboxState) {
  return {
    accounts: [...state.accounts.values()].map((a) => ({
      id: a.id,
      name: a.name,
      settings: a.settings,
      oauth: a.oauth,
      lists: [...a.lists.values()].map((l) => ({
        id: l.id,
        name: l.name,
        size: l.size,
        fields: [...l.fields.keys()],
        writes: l.writes,
      })),
    })),
  };
}

function summary(target: SandboxList, field: string) {
  const values = target.values.get(field) ?? [];
  const first = target.firstWritten.get(field) ?? [];
  let withValue = 0;
  let everWritten = 0;
  for (let i = 0; i < target.size; i++) {
    if (values[i] !== undefined) withValue++;
    if (first[i] !== undefined) everWritten++;
  }
  const conflicts = target.conflicts.get(field) ?? new Map<number, string[]>();
  return {
    contacts: target.size,
    fieldExists: target.fields.has(field),
    withValue,
    withoutValue: target.size - withValue,
    everWritten,
    writes: target.writes,
    conflicting: conflicts.size,
    conflicts: [...conflicts]
      .slice(0, 100)
      .map(([i, v]) => ({ contactId: SandboxList.contactId(i), values: v })),
  };
}

/** One JSON line per contact ever written: its current value and every distinct value written. */
async function streamHistory(ctx: RouteContext, target: SandboxList, field: string): Promise<symbol> {
  const { res } = ctx;
  res.writeHead(200, { 'content-type': 'application/x-ndjson' });
  const current = target.values.get(field) ?? [];
  const first = target.firstWritten.get(field) ?? [];
  let buffer = '';
  for (let i = 0; i < target.size; i++) {
    if (first[i] === undefined) continue;
    buffer +=
      JSON.stringify({
        contactId: SandboxList.contactId(i),
        current: current[i] ?? null,
        values: target.history(field, i),
      }) + '\n';
    if (buffer.length > 64 * 1024) {
      if (!res.write(buffer)) await new Promise((r) => res.once('drain', r));
      buffer = '';
    }
  }
  res.end(buffer);
  return STREAMED;
}
