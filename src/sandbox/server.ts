// The Sandbox ESP's HTTP API: what a demanding ESP looks like (OAuth with rotating refresh tokens,
// API keys, cursor pages, batches with per-row errors, 429s with Retry-After past an account's
// limits, shared or its listing's and writing's own; page and batch sizes and limits per account,
// named profiles imitating real ESPs), plus an admin API under /_sandbox for seeding, limits, faults
// and inspection. See docs/sandbox.md.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { same } from '../lib/same';
import { authorizeErrorPage, consentPage, type ConsentRequest } from './consent-page';
import { drawLatency } from './latency';
import { LimitCrossed, LimitGates, type RequestKind } from './limits';
import { applySettings, settingsSchema } from './settings';
import { SandboxList, type SandboxAccount, type SandboxState } from './state';

const MAX_BODY_BYTES = 10 * 1024 * 1024;
/** A listing request scans at most this many contacts, then returns a (possibly short) page. */
const MAX_SCAN = 50_000;
const FIELD_KEY = /^[a-z][a-z0-9_]{0,29}$/;
const VALUE = /^[A-Za-z0-9_-]{1,64}$/;
const ADMIN_PATH = /^\/_sandbox(\/|$)/;
/** An S256 code challenge: the base64url SHA-256 of the verifier (RFC 7636 4.2). */
const CODE_CHALLENGE = /^[A-Za-z0-9_-]{43}$/;

class HttpError extends Error {
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

interface Ctx {
  req: IncomingMessage;
  res: ServerResponse;
  params: string[];
  query: URLSearchParams;
  body: unknown;
  account: SandboxAccount;
}

type Route = {
  method: string;
  path: RegExp;
  kind: 'api' | 'public' | 'admin';
  /** Which of the account's own limits an API request also counts against. */
  requestKind?: RequestKind;
  handle: (ctx: Ctx) => unknown;
};

export interface SandboxStats {
  requests: number;
  byStatus: Record<string, number>;
  /** Epoch ms of the first and last API request counted, to measure achieved request rates. */
  firstAt: number;
  lastAt: number;
  /** Requests per kind not refused with 429: what the work needed. */
  needed: Record<RequestKind, number>;
  /** Epoch ms of the first batch update not refused with 429. */
  firstWriteAt?: number;
}

export interface SandboxServerOptions {
  /** Bearer token every /_sandbox request must carry. */
  adminToken: string;
}

export function createSandboxServer(
  state: SandboxState,
  options: SandboxServerOptions,
): Server & { stats: Map<string, SandboxStats> } {
  if (!options.adminToken) throw new Error('the Sandbox admin API needs a token');
  const gates = new LimitGates();
  const stats = new Map<string, SandboxStats>();

  const count = (accountId: string, status: number, kind: RequestKind) => {
    const now = Date.now();
    const s =
      stats.get(accountId) ??
      stats
        .set(accountId, {
          requests: 0,
          byStatus: {},
          firstAt: now,
          lastAt: now,
          needed: { listing: 0, writing: 0, other: 0 },
        })
        .get(accountId)!;
    s.requests++;
    s.lastAt = now;
    s.byStatus[status] = (s.byStatus[status] ?? 0) + 1;
    if (status === 429) return;
    s.needed[kind]++;
    if (kind === 'writing') s.firstWriteAt ??= now;
  };

  const list = (ctx: Ctx, id = ctx.params[0]!): SandboxList => {
    const found = ctx.account.lists.get(id);
    if (!found) throw new HttpError(404, 'list_not_found', `list ${id} does not exist`);
    return found;
  };

  const routes: Route[] = [
    // ---- OAuth 2.0 ----
    { method: 'GET', path: /^\/oauth\/authorize$/, kind: 'public', handle: authorizePage },
    { method: 'POST', path: /^\/oauth\/authorize$/, kind: 'public', handle: authorizeDecision },
    { method: 'POST', path: /^\/oauth\/token$/, kind: 'public', handle: token },

    // ---- API ----
    {
      method: 'GET',
      path: /^\/v1\/account$/,
      kind: 'api',
      handle: ({ account }) => ({ id: account.id, name: account.name }),
    },
    {
      method: 'GET',
      path: /^\/v1\/lists$/,
      kind: 'api',
      handle: ({ account }) => ({
        lists: [...account.lists.values()].map((l) => ({ id: l.id, name: l.name, contact_count: l.size })),
      }),
    },
    {
      method: 'GET',
      path: /^\/v1\/lists\/([^/]+)\/fields$/,
      kind: 'api',
      handle: (ctx) => ({ fields: [...list(ctx).fields.values()] }),
    },
    {
      method: 'POST',
      path: /^\/v1\/lists\/([^/]+)\/fields$/,
      kind: 'api',
      handle: (ctx) => {
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
      },
    },
    {
      method: 'DELETE',
      path: /^\/v1\/lists\/([^/]+)\/fields\/([^/]+)$/,
      kind: 'api',
      handle: (ctx) => {
        const target = list(ctx);
        const key = ctx.params[1]!;
        if (!target.fields.delete(key))
          throw new HttpError(404, 'field_not_found', `field ${key} does not exist`);
        target.values.delete(key);
        ctx.res.statusCode = 204;
        return undefined;
      },
    },
    {
      method: 'GET',
      path: /^\/v1\/lists\/([^/]+)\/contacts$/,
      kind: 'api',
      requestKind: 'listing',
      handle: listContacts,
    },
    {
      method: 'POST',
      path: /^\/v1\/lists\/([^/]+)\/contacts\/batch$/,
      kind: 'api',
      requestKind: 'writing',
      handle: batchUpdate,
    },

    // ---- admin (test mode only) ----
    { method: 'GET', path: /^\/_sandbox\/state$/, kind: 'admin', handle: () => describeState() },
    { method: 'GET', path: /^\/_sandbox\/stats$/, kind: 'admin', handle: () => Object.fromEntries(stats) },
    {
      method: 'POST',
      path: /^\/_sandbox\/stats\/reset$/,
      kind: 'admin',
      handle: () => (stats.clear(), { ok: true }),
    },
    {
      method: 'POST',
      path: /^\/_sandbox\/accounts$/,
      kind: 'admin',
      handle: (ctx) => {
        const body = parse(
          z.object({
            id: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/),
            name: z.string().min(1).max(200),
            apiKeys: z.array(z.string().min(8)).default([]),
            lists: z
              .array(z.object({ id: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/), name: z.string() }))
              .default([]),
            settings: settingsSchema.default({}),
          }),
          ctx.body,
        );
        if (state.accounts.has(body.id))
          throw new HttpError(409, 'account_exists', `account ${body.id} exists`);
        const account = state.addAccount(body.id, body.name, body.apiKeys);
        account.settings = applySettings(account.settings, body.settings);
        for (const l of body.lists) account.lists.set(l.id, new SandboxList(l.id, l.name));
        ctx.res.statusCode = 201;
        return { id: account.id };
      },
    },
    {
      method: 'PATCH',
      path: /^\/_sandbox\/accounts\/([^/]+)\/settings$/,
      kind: 'admin',
      handle: (ctx) => {
        const account = adminAccount(ctx.params[0]!);
        account.settings = applySettings(account.settings, parse(settingsSchema, ctx.body));
        return account.settings;
      },
    },
    {
      method: 'POST',
      path: /^\/_sandbox\/accounts\/([^/]+)\/lists\/([^/]+)\/seed$/,
      kind: 'admin',
      handle: (ctx) => {
        const account = adminAccount(ctx.params[0]!);
        const body = parse(z.object({ contacts: z.number().int().min(1).max(50_000_000) }), ctx.body);
        const seeded = state.seed(account.id, ctx.params[1]!, body.contacts);
        return { list: seeded.id, size: seeded.size };
      },
    },
    {
      method: 'POST',
      path: /^\/_sandbox\/accounts\/([^/]+)\/lists\/([^/]+)\/suppress$/,
      kind: 'admin',
      handle: (ctx) => {
        const target = adminList(ctx);
        const body = parse(z.object({ contactIds: z.array(z.string()) }), ctx.body);
        for (const id of body.contactIds) {
          const index = SandboxList.indexOf(id);
          if (!target.has(index)) throw new HttpError(400, 'unknown_contact', `contact ${id} does not exist`);
          target.suppressed.add(index);
        }
        return { suppressed: target.suppressed.size };
      },
    },
    {
      method: 'GET',
      path: /^\/_sandbox\/accounts\/([^/]+)\/oauth$/,
      kind: 'admin',
      handle: (ctx) => adminAccount(ctx.params[0]!).oauth,
    },
    {
      method: 'POST',
      path: /^\/_sandbox\/accounts\/([^/]+)\/expire-access-tokens$/,
      kind: 'admin',
      handle: (ctx) => (state.expireAccessTokens(adminAccount(ctx.params[0]!).id), { ok: true }),
    },
    {
      method: 'POST',
      path: /^\/_sandbox\/accounts\/([^/]+)\/revoke-grants$/,
      kind: 'admin',
      handle: (ctx) => (state.revokeGrants(adminAccount(ctx.params[0]!).id), { ok: true }),
    },
    {
      method: 'GET',
      path: /^\/_sandbox\/accounts\/([^/]+)\/lists\/([^/]+)\/summary$/,
      kind: 'admin',
      handle: (ctx) => summary(adminList(ctx), fieldParam(ctx)),
    },
    {
      method: 'GET',
      path: /^\/_sandbox\/accounts\/([^/]+)\/lists\/([^/]+)\/history$/,
      kind: 'admin',
      handle: (ctx) => streamHistory(ctx, adminList(ctx), fieldParam(ctx)),
    },
  ];

  function adminAccount(id: string): SandboxAccount {
    const account = state.accounts.get(id);
    if (!account) throw new HttpError(404, 'account_not_found', `account ${id} does not exist`);
    return account;
  }

  function adminList(ctx: Ctx): SandboxList {
    const l = adminAccount(ctx.params[0]!).lists.get(ctx.params[1]!);
    if (!l) throw new HttpError(404, 'list_not_found', `list ${ctx.params[1]} does not exist`);
    return l;
  }

  function fieldParam(ctx: Ctx): string {
    const field = ctx.query.get('field');
    if (!field) throw new HttpError(400, 'missing_field', 'the field query parameter is required');
    return field;
  }

  function describeState() {
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
  async function streamHistory(ctx: Ctx, target: SandboxList, field: string): Promise<symbol> {
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

  function authorizePage(ctx: Ctx) {
    const q = ctx.query;
    const request: ConsentRequest = {
      clientId: q.get('client_id') ?? '',
      redirectUri: q.get('redirect_uri') ?? '',
      state: q.get('state') ?? '',
      scope: q.get('scope') ?? '',
      codeChallenge: q.get('code_challenge') ?? '',
      codeChallengeMethod: q.get('code_challenge_method') ?? '',
    };
    checkAuthorization(request, q.get('response_type'));
    const accounts = [...state.accounts.values()].map((a) => ({ id: a.id, name: a.name }));
    ctx.res.setHeader('content-type', 'text/html; charset=utf-8');
    return consentPage(request, accounts);
  }

  function authorizeDecision(ctx: Ctx) {
    const form = parse(
      z.object({
        decision: z.enum(['approve', 'deny']),
        account: z.string().optional(),
        clientId: z.string(),
        redirectUri: z.string(),
        state: z.string().default(''),
        codeChallenge: z.string().default(''),
        codeChallengeMethod: z.string().default(''),
      }),
      ctx.body,
    );
    // The form comes back from the browser: checked again, as anyone can post it. Its page was
    // shown for response_type=code only.
    checkAuthorization(form, 'code');
    const target = new URL(form.redirectUri);
    if (form.decision === 'deny') {
      target.searchParams.set('error', 'access_denied');
      target.searchParams.set('error_description', 'The user denied access');
    } else {
      const account = state.accounts.get(form.account ?? '');
      if (!account) throw new HttpError(400, 'invalid_request', 'unknown account');
      target.searchParams.set(
        'code',
        state.issueCode({
          accountId: account.id,
          clientId: form.clientId,
          redirectUri: form.redirectUri,
          codeChallenge: form.codeChallenge,
        }),
      );
    }
    if (form.state) target.searchParams.set('state', form.state);
    ctx.res.writeHead(302, { location: target.toString() });
    ctx.res.end();
    return STREAMED;
  }

  /**
   * An authorization request as a real OAuth server checks it (RFC 6749 4.1.2.1): an unknown client
   * or a redirect URI not registered for it gets an error page and is never redirected to; other
   * problems are sent back to the (registered) redirect URI. PKCE with S256 is required.
   */
  function checkAuthorization(request: Omit<ConsentRequest, 'scope'>, responseType: string | null): void {
    const client = state.clients.get(request.clientId);
    if (!client) throw new AuthorizeError('invalid_client', 'unknown client_id');
    if (!client.redirectUris.includes(request.redirectUri)) {
      throw new AuthorizeError('invalid_request', 'redirect_uri is not registered for this client');
    }
    const back = { redirectUri: request.redirectUri, state: request.state };
    if (responseType !== 'code') {
      throw new AuthorizeError('unsupported_response_type', 'response_type must be code', back);
    }
    if (!CODE_CHALLENGE.test(request.codeChallenge)) {
      throw new AuthorizeError('invalid_request', 'PKCE is required: an S256 code_challenge', back);
    }
    if (request.codeChallengeMethod !== 'S256') {
      throw new AuthorizeError('invalid_request', 'code_challenge_method must be S256', back);
    }
  }

  function token(ctx: Ctx) {
    const form = (ctx.body ?? {}) as Record<string, string | undefined>;
    const client = state.clients.get(form.client_id ?? '');
    if (!client || !same(form.client_secret ?? '', client.secret)) {
      throw new OAuthError(401, 'invalid_client');
    }
    const issued =
      form.grant_type === 'authorization_code'
        ? state.exchangeCode(form.code ?? '', client.id, form.redirect_uri ?? '', form.code_verifier)
        : form.grant_type === 'refresh_token'
          ? state.refresh(form.refresh_token ?? '')
          : 'unsupported';
    if (issued === 'unsupported') throw new OAuthError(400, 'unsupported_grant_type');
    if (!issued) throw new OAuthError(400, 'invalid_grant');
    ctx.res.setHeader('cache-control', 'no-store');
    return issued;
  }

  function listContacts(ctx: Ctx) {
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
    if (cursor) {
      start = Number(Buffer.from(cursor, 'base64url').toString());
      if (!Number.isInteger(start) || start < 0)
        throw new HttpError(400, 'invalid_cursor', 'cursor is not valid');
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
    return { contacts, next_cursor: i < target.size ? Buffer.from(String(i)).toString('base64url') : null };
  }

  function batchUpdate(ctx: Ctx) {
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
          error: { code: 'contact_suppressed', message: 'contact is suppressed and cannot be updated' },
        };
      }
      for (const [key, value] of entries) target.write(key, index, value as string);
      return { id, status: 'updated' };
    });
    return { results };
  }

  async function handleApi(ctx: Omit<Ctx, 'account'>, route: Route): Promise<unknown> {
    const account = authenticate(ctx.req);
    const full = { ...ctx, account };
    const { limits, faults } = account.settings;
    const kind = route.requestKind ?? 'other';
    let leave: () => void;
    try {
      leave = gates.admit(account.id, [
        ['shared', limits],
        ['listing', kind === 'listing' ? limits.listing : undefined],
        ['writing', kind === 'writing' ? limits.writing : undefined],
      ]);
    } catch (err) {
      if (!(err instanceof LimitCrossed)) throw err;
      throw new HttpError(429, err.code, err.message, {}, { 'retry-after': String(err.retryAfterSeconds) });
    }
    try {
      if (faults.latencyMs > 0) await sleep(drawLatency(faults));
      if (Math.random() < faults.rateLimitRate) {
        throw new HttpError(429, 'rate_limited', 'rate limited (simulated)', {}, { 'retry-after': '1' });
      }
      if (Math.random() < faults.errorRate) {
        const status = Math.random() < 0.5 ? 500 : 503;
        throw new HttpError(status, 'server_error', 'internal error (simulated)');
      }
      if (Math.random() < faults.timeoutRate) {
        // Never answer; the client's timeout ends it.
        await new Promise((resolve) => ctx.req.socket.once('close', resolve));
        return STREAMED;
      }
      return await route.handle(full);
    } finally {
      leave();
    }
  }

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

  /** Every /_sandbox request, routed or not, needs the admin token (compared in constant time). */
  function authorizeAdmin(req: IncomingMessage): void {
    const header = req.headers.authorization ?? '';
    const presented = header.startsWith('Bearer ') ? header.slice('Bearer '.length) : '';
    if (!same(presented, options.adminToken)) {
      throw new HttpError(
        401,
        'unauthenticated',
        'the Sandbox admin API needs its admin token (Authorization: Bearer <token>)',
        {},
        { 'www-authenticate': 'Bearer realm="sandbox-admin"' },
      );
    }
  }

  const server = createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://sandbox');
    const route = routes.find((r) => r.method === req.method && r.path.test(url.pathname));
    let accountForStats: string | undefined;
    const kind = route?.requestKind ?? 'other';
    try {
      if (ADMIN_PATH.test(url.pathname)) authorizeAdmin(req);
      if (!route) throw new HttpError(404, 'not_found', `no route ${req.method} ${url.pathname}`);
      const body = await readBody(req);
      const ctx = {
        req,
        res,
        params: url.pathname.match(route.path)!.slice(1).map(decodeURIComponent),
        query: url.searchParams,
        body,
      };
      let result: unknown;
      if (route.kind === 'api') {
        accountForStats = accountIdFrom(req);
        result = await handleApi(ctx, route);
      } else {
        result = await route.handle(ctx as Ctx);
      }
      if (result === STREAMED) return;
      if (typeof result === 'string') {
        res.end(result);
      } else if (result === undefined) {
        res.end();
      } else {
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify(result));
      }
    } catch (err) {
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
    } finally {
      if (accountForStats) count(accountForStats, res.statusCode, kind);
    }
  });

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

  return Object.assign(server, { stats });
}

const STREAMED = Symbol('streamed');

/** A refused authorization request; `back`: where to send it back, when that URI can be trusted. */
class AuthorizeError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly back?: { redirectUri: string; state: string },
  ) {
    super(message);
  }
}

class OAuthError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
  ) {
    super(code);
  }
}

function parse<T>(schema: z.ZodType<T>, body: unknown): T {
  const parsed = schema.safeParse(body);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new HttpError(400, 'invalid_request', `${issue.path.join('.') || 'body'}: ${issue.message}`);
  }
  return parsed.data;
}

async function readBody(req: IncomingMessage): Promise<unknown> {
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
