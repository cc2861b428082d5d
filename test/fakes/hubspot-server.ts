// A fake HubSpot API (CRM v3 contacts, properties and search; account info; OAuth 2026-03 token
// endpoint) on 127.0.0.1, in this process so tests can look at its state. Request bodies are
// validated strictly against the shapes of HubSpot's published specs: anything unknown, missing or
// mistyped answers HubSpot's 400 and is recorded in `problems`.
import { randomBytes, randomUUID } from 'node:crypto';
import http from 'node:http';
import { closeServer, listenLocal } from '../support/listen';

export interface FakeRequest {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body?: unknown;
}

interface Contact {
  id: number;
  email: string;
  props: Map<string, string>;
}

export class Portal {
  readonly contacts: Contact[] = [];
  readonly properties = new Map<string, Record<string, unknown>>();
  /** Contacts whose updates HubSpot refuses per row (e.g. a validation rule). */
  readonly rejected = new Set<string>();
  /** Every API call answers 429 for this policy while set. */
  rateLimited?: 'TEN_SECONDLY_ROLLING' | 'SECONDLY' | 'DAILY';
  private nextId = 101;
  constructor(
    readonly id: number,
    readonly privateAppToken: string,
  ) {
    for (const name of ['email', 'firstname', 'hs_object_id', 'createdate', 'lastmodifieddate']) {
      this.properties.set(name, property(name, 'contactinformation', true));
    }
  }
  seed(n: number): string[] {
    return Array.from({ length: n }, () => {
      // Ids are increasing but not contiguous, like HubSpot's.
      const id = (this.nextId += 1 + (this.nextId % 3));
      this.contacts.push({ id, email: `person${id}@example.com`, props: new Map() });
      return String(id);
    });
  }
  /** Ids of contacts merged into another: HubSpot answers for them with the surviving record. */
  readonly mergedInto = new Map<string, string>();
  contact(id: string): Contact | undefined {
    const current = this.mergedInto.get(id) ?? id;
    return /^\d+$/.test(current) ? this.contacts.find((c) => c.id === Number(current)) : undefined;
  }
  /** Merges `from` into `into`, as the HubSpot UI does: `from` is gone, its id now reaches `into`. */
  merge(from: string, into: string): void {
    this.contacts.splice(
      this.contacts.findIndex((c) => String(c.id) === from),
      1,
    );
    this.mergedInto.set(from, into);
  }
}

const PROPERTY_FIELDS = new Set([
  'name',
  'label',
  'type',
  'fieldType',
  'groupName',
  'description',
  'options',
  'displayOrder',
  'hasUniqueValue',
  'hidden',
  'formField',
  'calculationFormula',
  'currencyPropertyName',
  'dataSensitivity',
  'externalOptions',
  'numberDisplayHint',
  'referencedObjectType',
  'showCurrencySymbol',
  'textDisplayHint',
]);
const TYPES: Record<string, string[]> = {
  string: ['text', 'textarea', 'file', 'html', 'phonenumber'],
  number: ['number', 'calculation_equation'],
  enumeration: ['select', 'radio', 'checkbox', 'booleancheckbox'],
  bool: ['booleancheckbox'],
  date: ['date'],
  datetime: ['date'],
  phone_number: ['phonenumber'],
};
const OPERATORS = new Set([
  'BETWEEN',
  'CONTAINS_TOKEN',
  'EQ',
  'GT',
  'GTE',
  'HAS_PROPERTY',
  'IN',
  'LT',
  'LTE',
  'NEQ',
  'NOT_CONTAINS_TOKEN',
  'NOT_HAS_PROPERTY',
  'NOT_IN',
]);
const SCOPES = new Set([
  'oauth',
  'crm.objects.contacts.read',
  'crm.objects.contacts.write',
  'crm.schemas.contacts.write',
  'crm.schemas.contacts.read',
]);
const SEARCH_PER_SECOND = 5;
const BURST = { requests: 100, perMs: 10_000 };

function property(name: string, groupName: string, hubspotDefined = false) {
  const now = new Date().toISOString();
  return {
    name,
    label: name,
    type: 'string',
    fieldType: 'text',
    groupName,
    description: '',
    options: [],
    displayOrder: -1,
    hasUniqueValue: false,
    hidden: false,
    formField: false,
    hubspotDefined,
    createdAt: now,
    updatedAt: now,
    archived: false,
    modificationMetadata: {
      archivable: true,
      readOnlyDefinition: hubspotDefined,
      readOnlyValue: hubspotDefined,
    },
  };
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly body: Record<string, unknown>,
  ) {
    super(String(body.message));
  }
}

const standard = (status: number, category: string, message: string, extra: Record<string, unknown> = {}) =>
  new HttpError(status, { status: 'error', message, correlationId: randomUUID(), category, ...extra });

export class FakeHubSpot {
  readonly portals = new Map<number, Portal>();
  readonly requests: FakeRequest[] = [];
  /** Requests that broke the documented schema (the fake answered 400 to them). */
  readonly problems: string[] = [];
  /** Largest batch update ever received. */
  largestBatch = 0;
  tokenGrants = 0;
  readonly client = { id: `client-${randomUUID()}`, secret: `secret-${randomBytes(12).toString('hex')}` };
  /** While set, 2xx API answers carry this text instead (malformed-body tests). */
  malformed?: string;
  /** The portal the next OAuth consent installs the app in. */
  consentPortal?: Portal;
  private readonly codes = new Map<string, { portal: Portal; redirectUri: string }>();
  private readonly accessTokens = new Map<string, { portal: Portal; expiresAt: number }>();
  private readonly refreshTokens = new Map<string, Portal>();
  private readonly hits = new Map<string, number[]>();
  private nextPortal = 20_000_001;
  private server?: http.Server;
  url = '';

  addPortal(): Portal {
    const id = this.nextPortal++;
    const portal = new Portal(id, `pat-na1-${randomUUID()}`);
    this.portals.set(id, portal);
    return portal;
  }

  expireAccessTokens(portal: Portal): void {
    for (const t of this.accessTokens.values()) if (t.portal === portal) t.expiresAt = 0;
  }

  revokeGrants(portal: Portal): void {
    for (const [k, t] of this.accessTokens) if (t.portal === portal) this.accessTokens.delete(k);
    for (const [k, p] of this.refreshTokens) if (p === portal) this.refreshTokens.delete(k);
  }

  async start(): Promise<void> {
    this.server = http.createServer((req, res) => void this.handle(req, res));
    this.url = await listenLocal(this.server);
  }

  stop(): Promise<void> {
    return closeServer(this.server!);
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const text = Buffer.concat(chunks).toString('utf8');
    const url = new URL(req.url ?? '/', 'http://x');
    const record: FakeRequest = { method: req.method ?? 'GET', url: req.url ?? '/', headers: req.headers };
    this.requests.push(record);
    const send = (status: number, body: unknown, headers: Record<string, string> = {}) => {
      let out = body === undefined ? '' : JSON.stringify(body);
      if (status < 300 && this.malformed !== undefined && !url.pathname.startsWith('/oauth'))
        out = this.malformed;
      res.writeHead(status, { 'content-type': 'application/json;charset=utf-8', ...headers });
      res.end(out);
    };
    try {
      if (req.method === 'GET' && url.pathname === '/oauth/authorize') return this.authorize(url, res);
      if (req.method === 'POST' && url.pathname === '/oauth/2026-03/token') {
        return send(200, this.token(req, text));
      }
      let body: unknown;
      if (req.method === 'POST') {
        if (!String(req.headers['content-type']).startsWith('application/json')) {
          throw this.invalid(415, 'UNSUPPORTED_MEDIA_TYPE', 'Content type not supported');
        }
        try {
          record.body = body = JSON.parse(text);
        } catch {
          throw this.invalid(400, 'VALIDATION_ERROR', 'Invalid input JSON: could not parse the request body');
        }
      }
      const portal = this.authenticate(req);
      if (portal.rateLimited) {
        const policyName = portal.rateLimited;
        return send(
          429,
          {
            status: 'error',
            message: `You have reached your ${policyName.toLowerCase()} limit.`,
            errorType: 'RATE_LIMIT',
            correlationId: randomUUID(),
            policyName,
            groupName: `publicapi:${portal.id}`,
          },
          {
            'x-hubspot-ratelimit-interval-milliseconds': '10000',
            'x-hubspot-ratelimit-max': '100',
            'x-hubspot-ratelimit-remaining': '0',
          },
        );
      }
      const search = url.pathname === '/crm/v3/objects/contacts/search';
      this.throttle(portal, search);
      const headers: Record<string, string> = search
        ? {}
        : {
            'x-hubspot-ratelimit-interval-milliseconds': '10000',
            'x-hubspot-ratelimit-max': String(BURST.requests),
          };
      const route = `${req.method} ${url.pathname}`;
      if (route === 'GET /account-info/v3/details') return send(200, details(portal), headers);
      const prop = /^\/crm\/v3\/properties\/contacts\/([^/]+)$/.exec(url.pathname);
      if (req.method === 'GET' && prop) {
        const found = portal.properties.get(decodeURIComponent(prop[1]!));
        if (!found)
          throw standard(404, 'OBJECT_NOT_FOUND', `Unable to find property ${prop[1]} for object 0-1`);
        return send(200, found, headers);
      }
      if (route === 'POST /crm/v3/properties/contacts')
        return send(201, this.createProperty(portal, body), headers);
      if (search) return send(200, this.search(portal, body), headers);
      if (route === 'POST /crm/v3/objects/contacts/batch/update') {
        const out = this.batchUpdate(portal, body);
        return send(out.errors ? 207 : 200, out, headers);
      }
      throw standard(404, 'OBJECT_NOT_FOUND', 'Resource not found');
    } catch (err) {
      if (err instanceof HttpError) return send(err.status, err.body);
      send(500, { status: 'error', message: String(err), category: 'INTERNAL_ERROR' });
    }
  }

  private invalid(status: number, category: string, message: string): HttpError {
    this.problems.push(message);
    return standard(status, category, message);
  }

  private authenticate(req: http.IncomingMessage): Portal {
    const token = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '')?.[1];
    const oauth = token ? this.accessTokens.get(token) : undefined;
    if (oauth && oauth.expiresAt > Date.now()) return oauth.portal;
    if (oauth) {
      throw standard(
        401,
        'EXPIRED_AUTHENTICATION',
        'The OAuth token used to make this call expired 1 second(s) ago.',
      );
    }
    for (const p of this.portals.values()) if (token && p.privateAppToken === token) return p;
    throw standard(
      401,
      'INVALID_AUTHENTICATION',
      'Authentication credentials not found. This API supports OAuth 2.0 authentication.',
    );
  }

  /** HubSpot's limits: 100 requests per 10 s per app and account; searches 5 per second. */
  private throttle(portal: Portal, search: boolean): void {
    const now = Date.now();
    const check = (key: string, max: number, perMs: number, policyName: string) => {
      const hits = (this.hits.get(key) ?? []).filter((t) => t > now - perMs);
      if (hits.length >= max) {
        this.problems.push(`rate limit ${policyName} exceeded`);
        throw new HttpError(429, {
          status: 'error',
          message: `You have reached your ${policyName.toLowerCase()} limit.`,
          errorType: 'RATE_LIMIT',
          correlationId: randomUUID(),
          policyName,
        });
      }
      hits.push(now);
      this.hits.set(key, hits);
    };
    check(`burst:${portal.id}`, BURST.requests, BURST.perMs, 'TEN_SECONDLY_ROLLING');
    if (search) check(`search:${portal.id}`, SEARCH_PER_SECOND, 1_000, 'SECONDLY');
  }

  private authorize(url: URL, res: http.ServerResponse): void {
    const q = url.searchParams;
    const redirectUri = q.get('redirect_uri');
    const scopes = (q.get('scope') ?? '').split(' ');
    if (
      q.get('client_id') !== this.client.id ||
      !redirectUri ||
      !this.consentPortal ||
      scopes.some((s) => !SCOPES.has(s))
    ) {
      res.writeHead(400, { 'content-type': 'text/html' });
      return void res.end('<html>Authorization failed</html>');
    }
    const code = randomUUID();
    this.codes.set(code, { portal: this.consentPortal, redirectUri });
    const to = new URL(redirectUri);
    to.searchParams.set('code', code);
    if (q.get('state')) to.searchParams.set('state', q.get('state')!);
    res.writeHead(302, { location: to.toString() });
    res.end();
  }

  private token(req: http.IncomingMessage, text: string): Record<string, unknown> {
    const oauthError = (error: string, status: string, description: string) =>
      new HttpError(400, {
        error,
        error_description: description,
        status,
        message: description,
        correlationId: randomUUID(),
      });
    if (!String(req.headers['content-type']).startsWith('application/x-www-form-urlencoded')) {
      throw this.invalid(415, 'UNSUPPORTED_MEDIA_TYPE', 'token requests are form-encoded');
    }
    const form = new URLSearchParams(text);
    const known = new Set([
      'grant_type',
      'client_id',
      'client_secret',
      'code',
      'redirect_uri',
      'refresh_token',
      'code_verifier',
      'scope',
    ]);
    for (const k of form.keys())
      if (!known.has(k)) throw this.invalid(400, 'VALIDATION_ERROR', `unknown field ${k}`);
    if (form.get('client_id') !== this.client.id || form.get('client_secret') !== this.client.secret) {
      throw oauthError('invalid_client', 'BAD_CLIENT_ID', 'missing or invalid client credentials');
    }
    let portal: Portal | undefined;
    let refreshToken: string;
    if (form.get('grant_type') === 'authorization_code') {
      const grant = this.codes.get(form.get('code') ?? '');
      this.codes.delete(form.get('code') ?? '');
      if (!grant || grant.redirectUri !== form.get('redirect_uri')) {
        throw oauthError('invalid_grant', 'BAD_AUTH_CODE', 'missing or unknown auth code');
      }
      portal = grant.portal;
      refreshToken = randomUUID();
      this.refreshTokens.set(refreshToken, portal);
    } else if (form.get('grant_type') === 'refresh_token') {
      refreshToken = form.get('refresh_token') ?? '';
      portal = this.refreshTokens.get(refreshToken);
      if (!portal)
        throw oauthError(
          'invalid_grant',
          'BAD_REFRESH_TOKEN',
          'refresh token is invalid, expired or revoked',
        );
    } else {
      throw oauthError('unsupported_grant_type', 'BAD_GRANT_TYPE', 'unsupported grant_type');
    }
    this.tokenGrants++;
    const accessToken = `CK${randomBytes(24).toString('base64url')}`;
    this.accessTokens.set(accessToken, { portal, expiresAt: Date.now() + 1_800_000 });
    // HubSpot keeps the refresh token: the same one comes back.
    return {
      access_token: accessToken,
      refresh_token: refreshToken,
      expires_in: 1800,
      token_type: 'bearer',
      token_use: 'access_token',
      hub_id: portal.id,
      scopes: [...SCOPES],
    };
  }

  private createProperty(portal: Portal, body: unknown): Record<string, unknown> {
    const b = body as Record<string, unknown>;
    if (typeof b !== 'object' || b === null || Array.isArray(b))
      throw this.invalid(400, 'VALIDATION_ERROR', 'body must be an object');
    for (const k of Object.keys(b))
      if (!PROPERTY_FIELDS.has(k)) throw this.invalid(400, 'VALIDATION_ERROR', `Unrecognized field "${k}"`);
    for (const k of ['name', 'label', 'type', 'fieldType', 'groupName']) {
      if (typeof b[k] !== 'string' || !b[k]) throw this.invalid(400, 'VALIDATION_ERROR', `${k} is required`);
    }
    const name = b.name as string;
    if (!/^[a-z][a-z0-9_]*$/.test(name))
      throw this.invalid(400, 'VALIDATION_ERROR', `invalid property name ${name}`);
    if (!TYPES[b.type as string]?.includes(b.fieldType as string)) {
      throw this.invalid(
        400,
        'VALIDATION_ERROR',
        `fieldType ${String(b.fieldType)} is not valid for type ${String(b.type)}`,
      );
    }
    if (b.groupName !== 'contactinformation')
      throw this.invalid(400, 'VALIDATION_ERROR', 'unknown property group');
    if (portal.properties.has(name)) {
      throw standard(409, 'OBJECT_ALREADY_EXISTS', `A property named '${name}' already exists.`);
    }
    const created = { ...property(name, 'contactinformation'), ...b };
    portal.properties.set(name, created);
    return created;
  }

  private search(portal: Portal, body: unknown): Record<string, unknown> {
    const b = body as Record<string, unknown>;
    const bad = (m: string) => this.invalid(400, 'VALIDATION_ERROR', m);
    if (typeof b !== 'object' || b === null || Array.isArray(b)) throw bad('body must be an object');
    for (const k of Object.keys(b)) {
      if (!['after', 'filterGroups', 'limit', 'properties', 'query', 'sorts'].includes(k))
        throw bad(`Unrecognized field "${k}"`);
    }
    const limit = b.limit ?? 10;
    if (!Number.isInteger(limit) || (limit as number) < 1 || (limit as number) > 200)
      throw bad('limit must be 1 to 200');
    const after = Number(b.after ?? '0');
    if ((b.after !== undefined && typeof b.after !== 'string') || !Number.isInteger(after) || after < 0)
      throw bad('invalid after');
    if (after + (limit as number) > 10_000) throw bad('paging past 10000 results is not supported');
    const groups = (b.filterGroups ?? []) as unknown[];
    if (!Array.isArray(groups) || groups.length > 5) throw bad('up to 5 filterGroups');
    const known = (name: unknown) => typeof name === 'string' && portal.properties.has(name);
    const matchers = groups.map((g) => {
      const gk = g as { filters?: unknown };
      if (
        typeof g !== 'object' ||
        g === null ||
        Object.keys(g).some((k) => k !== 'filters') ||
        !Array.isArray(gk.filters) ||
        gk.filters.length > 6
      )
        throw bad('a filterGroup has filters (up to 6)');
      return (gk.filters as Array<Record<string, unknown>>).map((f) => {
        if (
          typeof f !== 'object' ||
          f === null ||
          Object.keys(f).some(
            (k) => !['propertyName', 'operator', 'value', 'values', 'highValue'].includes(k),
          ) ||
          !OPERATORS.has(f.operator as string)
        )
          throw bad('invalid filter');
        if (!known(f.propertyName))
          throw bad(
            `There was a problem with the request: property ${String(f.propertyName)} does not exist`,
          );
        const needsValue = !['HAS_PROPERTY', 'NOT_HAS_PROPERTY'].includes(f.operator as string);
        if (needsValue && typeof f.value !== 'string') throw bad(`filter ${f.operator} needs a string value`);
        if (!needsValue && f.value !== undefined) throw bad(`filter ${f.operator} takes no value`);
        return (c: Contact) => {
          const v = f.propertyName === 'hs_object_id' ? String(c.id) : c.props.get(f.propertyName as string);
          switch (f.operator) {
            case 'HAS_PROPERTY':
              return v !== undefined && v !== '';
            case 'NOT_HAS_PROPERTY':
              return v === undefined || v === '';
            case 'EQ':
              return v === f.value;
            case 'GT':
              return f.propertyName === 'hs_object_id'
                ? c.id > Number(f.value)
                : (v ?? '') > (f.value as string);
            default:
              throw bad(`operator ${f.operator} is not supported by this fake`);
          }
        };
      });
    });
    const sorts = (b.sorts ?? []) as Array<Record<string, unknown>>;
    if (!Array.isArray(sorts) || sorts.length > 1) throw bad('one sort at most');
    for (const s of sorts) {
      if (
        typeof s !== 'object' ||
        s === null ||
        Object.keys(s).some((k) => !['propertyName', 'direction'].includes(k)) ||
        !known(s.propertyName) ||
        !['ASCENDING', 'DESCENDING'].includes(s.direction as string)
      )
        throw bad('invalid sort');
    }
    const props = (b.properties ?? []) as unknown[];
    if (!Array.isArray(props) || props.some((p) => typeof p !== 'string'))
      throw bad('properties must be strings');
    let hits = portal.contacts.filter(
      (c) => matchers.length === 0 || matchers.some((g) => g.every((m) => m(c))),
    );
    hits = [...hits].sort((x, y) => x.id - y.id);
    if (sorts[0]?.direction === 'DESCENDING') hits.reverse();
    const page = hits.slice(after, after + (limit as number));
    const next = after + page.length;
    return {
      total: hits.length,
      results: page.map((c) => toObject(c, props as string[])),
      ...(next < hits.length ? { paging: { next: { after: String(next), link: `?after=${next}` } } } : {}),
    };
  }

  private batchUpdate(portal: Portal, body: unknown): Record<string, unknown> {
    const bad = (m: string) => this.invalid(400, 'VALIDATION_ERROR', m);
    const b = body as { inputs?: unknown };
    if (
      typeof b !== 'object' ||
      b === null ||
      Object.keys(b).some((k) => k !== 'inputs') ||
      !Array.isArray(b.inputs)
    ) {
      throw bad('body must be { inputs: [...] }');
    }
    const inputs = b.inputs as Array<Record<string, unknown>>;
    this.largestBatch = Math.max(this.largestBatch, inputs.length);
    if (inputs.length === 0 || inputs.length > 100)
      throw bad(`Batch size ${inputs.length}: batches take 1 to 100 inputs`);
    const seen = new Set<string>();
    for (const i of inputs) {
      if (
        typeof i !== 'object' ||
        i === null ||
        Object.keys(i).some((k) => !['id', 'idProperty', 'objectWriteTraceId', 'properties'].includes(k)) ||
        typeof i.id !== 'string' ||
        typeof i.properties !== 'object' ||
        i.properties === null
      )
        throw bad('each input has id and properties');
      if (seen.has(i.id)) throw bad('Duplicate IDs found in batch input');
      seen.add(i.id);
      for (const [k, v] of Object.entries(i.properties as Record<string, unknown>)) {
        if (typeof v !== 'string') throw bad(`property ${k} must be a string`);
        if (!portal.properties.has(k)) {
          throw standard(400, 'VALIDATION_ERROR', 'Property values were not valid', {
            errors: [
              {
                message: `Property "${k}" does not exist`,
                code: 'PROPERTY_DOESNT_EXIST',
                context: { propertyName: [k] },
              },
            ],
          });
        }
      }
    }
    // A batch naming records that do not exist is refused whole; nothing is created.
    const missing = inputs.map((i) => i.id as string).filter((id) => !portal.contact(id));
    if (missing.length > 0) {
      throw standard(
        404,
        'OBJECT_NOT_FOUND',
        `Could not update some CONTACT objects, they may be deleted or not exist. Check that ids are valid.`,
        { context: { ids: missing } },
      );
    }
    const now = new Date().toISOString();
    const results: unknown[] = [];
    const errors: unknown[] = [];
    for (const i of inputs) {
      const c = portal.contact(i.id as string)!;
      if (portal.rejected.has(String(c.id))) {
        errors.push({
          status: 'error',
          category: 'VALIDATION_ERROR',
          message: `Property values were not valid for ${c.email} (${c.id})`,
          context: { ids: [String(c.id)] },
          errors: [],
          links: {},
        });
        continue;
      }
      for (const [k, v] of Object.entries(i.properties as Record<string, string>)) c.props.set(k, v);
      results.push(toObject(c, Object.keys(i.properties as object)));
    }
    return {
      status: 'COMPLETE',
      results,
      startedAt: now,
      completedAt: now,
      ...(errors.length ? { errors, numErrors: errors.length } : {}),
    };
  }
}

function toObject(c: Contact, props: string[]) {
  const now = new Date().toISOString();
  const properties: Record<string, string | null> = {
    hs_object_id: String(c.id),
    createdate: now,
    lastmodifieddate: now,
  };
  for (const p of props)
    properties[p] = p === 'email' ? c.email : p === 'hs_object_id' ? String(c.id) : (c.props.get(p) ?? null);
  return { id: String(c.id), properties, createdAt: now, updatedAt: now, archived: false };
}

function details(portal: Portal) {
  return {
    portalId: portal.id,
    accountType: 'STANDARD',
    timeZone: 'US/Eastern',
    companyCurrency: 'USD',
    additionalCurrencies: [],
    utcOffset: '-05:00',
    utcOffsetMilliseconds: -18_000_000,
    uiDomain: 'app.hubspot.com',
    dataHostingLocation: 'na1',
  };
}
