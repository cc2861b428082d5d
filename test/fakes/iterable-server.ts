// A fake Iterable data center (US or EU): the endpoints espresso uses, with Iterable's paths, Api-Key
// auth, error bodies ({msg, code, params}), strict request shapes from Iterable's published Swagger
// document, export jobs with NDJSON files behind expiring links (Range supported), bulkUpdate's
// per-row failure arrays, 429s when switched on, and Iterable's limit on the export endpoints: one
// request a second per organization, answered 429 when called faster. One project per API key.
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { closeServer, listenLocal } from '../support/listen';

export interface FakeUser {
  email?: string;
  userId?: string;
  data: Record<string, unknown>;
}

export class FakeProject {
  readonly fields = new Map<string, string>([
    ['email', 'string'],
    ['userId', 'string'],
  ]);
  readonly users: FakeUser[] = [];
  /** Updates of these users fail as GDPR-forgotten. */
  readonly forgotten = new Set<FakeUser>();
  rateLimited = false;
  /** The project's "add unrecognized fields" setting. */
  acceptNewFields = true;
  constructor(
    readonly apiKey: string,
    readonly channelIds: number[],
    /** The Iterable organization the project belongs to: its export limits are the organization's. */
    readonly organization: string,
  ) {}

  byEmail(email: string) {
    return this.users.find((u) => u.email === email.toLowerCase());
  }
  byUserId(userId: string) {
    return this.users.find((u) => u.userId === userId);
  }
  /** Seeds users `person<N>@example.com`; even N also get userId `user<N>`. Returns espresso contactIds. */
  seed(n: number): string[] {
    const ids: string[] = [];
    for (let i = 0; i < n; i++) {
      const k = this.users.length;
      const user: FakeUser = { email: `person${k}@example.com`, data: {} };
      if (k % 2 === 0) user.userId = `user${k}`;
      this.users.push(user);
      ids.push(user.userId ? `uid:${user.userId}` : user.email!);
    }
    return ids;
  }
  find(contactId: string) {
    return contactId.startsWith('uid:') ? this.byUserId(contactId.slice(4)) : this.byEmail(contactId);
  }
  deleteUser(contactId: string) {
    const user = this.find(contactId);
    if (user) this.users.splice(this.users.indexOf(user), 1);
  }
}

interface Job {
  id: number;
  project: FakeProject;
  polls: number;
  files: Array<{ file: string; token: string; content: Buffer }>;
}

export interface Recorded {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body?: unknown;
  /** Epoch ms the request arrived. */
  at: number;
  status?: number;
}

const BULK_USER_KEYS = new Set(['email', 'userId', 'dataFields', 'preferUserId', 'mergeNestedObjects']);
const UPDATE_KEYS = new Set([...BULK_USER_KEYS, 'createNewFields']);
const EXPORT_KEYS = new Set([
  'campaignId',
  'dataTypeName',
  'delimiter',
  'endDateTime',
  'omitFields',
  'onlyFields',
  'outputFormat',
  'startDateTime',
]);
const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;
const MAX_BODY = 4 * 1024 * 1024;
/** POST /api/export/start and GET /api/export/{jobId}/files: 1 request/second per organization each. */
const EXPORT_ENDPOINTS = /^\/api\/export\/(start|\d+\/files)$/;
const EXPORT_INTERVAL_MS = 1_000;

class Fail extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    msg: string,
  ) {
    super(msg);
  }
}

export class FakeIterable {
  readonly projects = new Map<string, FakeProject>();
  readonly jobs = new Map<number, Job>();
  readonly requests: Recorded[] = [];
  /**
   * The states an export job answers, one per poll, the last one for good (as spelled here). Files
   * appear while it is `running` and all of them once `completed`; a job ending otherwise lists none.
   */
  jobStates = ['Enqueued', 'Running', 'Completed'];
  /** Users per export file, and files per /files answer. */
  fileLines = 400;
  filesPerAnswer = 3;
  /** Answer bulkUpdates with a 200 whose body is not Iterable's shape. */
  malformed = false;
  /** Serve export files without honouring Range (whole file, 200). */
  ignoreRange = false;
  /** Origin of the file links answered (default: the fake's own); and where file links redirect. */
  fileOrigin?: string;
  redirectFilesTo?: string;
  private nextJob = 3562;
  private nextChannel: number;
  /** Per organization and export endpoint, when the last request Iterable accepted arrived. */
  private readonly lastExportCall = new Map<string, number>();
  private server!: http.Server;
  url = '';

  constructor(readonly region: 'us' | 'eu') {
    this.nextChannel = region === 'us' ? 1000 : 500_000;
  }

  /** A project in its own organization, or in `organization` with the projects already there. */
  addProject(organization = randomBytes(4).toString('hex')): FakeProject {
    const key = randomBytes(16).toString('hex');
    const ids = [this.nextChannel++, this.nextChannel++];
    const project = new FakeProject(key, ids, organization);
    this.projects.set(key, project);
    return project;
  }

  async start(): Promise<this> {
    this.server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => this.handle(req, Buffer.concat(chunks), res));
    });
    this.url = await listenLocal(this.server);
    return this;
  }

  stop(): Promise<void> {
    return closeServer(this.server);
  }

  private handle(req: http.IncomingMessage, raw: Buffer, res: http.ServerResponse) {
    const url = new URL(req.url!, 'http://x');
    if (url.pathname.startsWith('/_files/')) {
      if (!this.redirectFilesTo) return this.download(url.pathname.slice(8), req, res);
      res.writeHead(302, { location: `${this.redirectFilesTo}${url.pathname}` });
      return void res.end();
    }
    // Recorded before any check, so what the fake refuses is in `requests` too.
    const record: Recorded = { method: req.method!, url: req.url!, headers: req.headers, at: Date.now() };
    this.requests.push(record);
    const send = (status: number, body: unknown) => {
      record.status = status;
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    let body: unknown;
    try {
      if (raw.length > MAX_BODY) throw new Fail(413, 'BatchTooLarge', 'Request body is larger than 4MB');
      if (req.method === 'POST') {
        if (!String(req.headers['content-type']).startsWith('application/json')) {
          throw new Fail(400, 'BadJsonBody', 'Content-Type must be application/json');
        }
        try {
          body = JSON.parse(raw.toString('utf8'));
        } catch {
          throw new Fail(400, 'BadJsonBody', 'Could not parse JSON body');
        }
      }
      record.body = body;
      const project = this.projects.get(String(req.headers['api-key'] ?? ''));
      if (!project) throw new Fail(401, 'BadApiKey', 'Invalid API key');
      if (project.rateLimited) throw new Fail(429, 'RateLimitExceeded', 'Rate limit exceeded');
      this.limitExports(project, url.pathname, record.at);
      send(200, this.route(project, req.method!, url, body));
    } catch (err) {
      if (!(err instanceof Fail)) throw err;
      send(err.status, { msg: err.message, code: err.code, params: null });
    }
  }

  /** A second request to an export endpoint within a second, from any project of the organization: 429. */
  private limitExports(project: FakeProject, path: string, at: number): void {
    const endpoint = EXPORT_ENDPOINTS.exec(path)?.[1];
    if (!endpoint) return;
    const key = `${project.organization} ${endpoint === 'start' ? 'start' : 'files'}`;
    const last = this.lastExportCall.get(key);
    if (last !== undefined && at - last < EXPORT_INTERVAL_MS) {
      throw new Fail(429, 'RateLimitExceeded', `Exceeded rate limit for endpoint: ${path}`);
    }
    this.lastExportCall.set(key, at);
  }

  private route(project: FakeProject, method: string, url: URL, body: unknown): unknown {
    const path = url.pathname;
    const noQuery = (...allowed: string[]) => {
      for (const k of url.searchParams.keys())
        if (!allowed.includes(k)) throw new Fail(400, 'BadParams', `Unknown parameter ${k}`);
    };
    if (method === 'GET' && path === '/api/channels') {
      noQuery();
      return {
        channels: project.channelIds.map((id, i) => ({
          id,
          name: i ? 'Transactional Email' : 'Marketing Email',
          channelType: i ? 'Transactional' : 'Marketing',
          messageMedium: 'Email',
        })),
      };
    }
    if (method === 'GET' && path === '/api/users/getFields') {
      noQuery();
      return { fields: Object.fromEntries(project.fields) };
    }
    if (method === 'POST' && path === '/api/users/update') {
      noQuery();
      const b = object(body, UPDATE_KEYS);
      const user = this.identify(project, b, b.preferUserId === true);
      if (!user) throw new Fail(400, 'UnknownUserIdError', 'No user with this userId');
      this.write(project, user, b.dataFields, b.createNewFields);
      return { msg: '', code: 'Success', params: null };
    }
    if (method === 'POST' && path === '/api/users/bulkUpdate') {
      noQuery();
      return this.bulkUpdate(project, object(body, new Set(['users', 'createNewFields'])));
    }
    if (method === 'POST' && path === '/api/export/start') {
      noQuery();
      return this.startExport(project, object(body, EXPORT_KEYS));
    }
    const files = /^\/api\/export\/(\d+)\/files$/.exec(path);
    if (method === 'GET' && files) {
      noQuery('startAfter');
      const job = this.jobs.get(Number(files[1]));
      if (!job || job.project !== project) throw new Fail(400, 'BadParams', 'No such export job');
      job.polls++;
      const state = this.jobStates[Math.min(job.polls, this.jobStates.length) - 1]!;
      // Files appear while the job runs: the first while running, all once completed.
      const lower = state.toLowerCase();
      const ready = lower === 'running' ? job.files.slice(0, 1) : lower === 'completed' ? job.files : [];
      const after = url.searchParams.get('startAfter');
      const from = after ? ready.findIndex((f) => f.file === after) + 1 : 0;
      return {
        exportTruncated: false,
        files: ready
          .slice(from, from + this.filesPerAnswer)
          .map((f) => ({ file: f.file, url: `${this.fileOrigin ?? this.url}/_files/${f.token}` })),
        jobId: job.id,
        jobState: state,
      };
    }
    throw new Fail(404, 'NotFound', `No route ${method} ${path}`);
  }

  private identify(project: FakeProject, b: Record<string, unknown>, create: boolean): FakeUser | undefined {
    const hasEmail = b.email !== undefined;
    if (hasEmail === (b.userId !== undefined)) {
      throw new Fail(400, 'BadParams', 'Provide an email or a userId (but not both)');
    }
    if (hasEmail) {
      const email = b.email;
      if (typeof email !== 'string' || !EMAIL.test(email))
        throw new Fail(400, 'InvalidEmailAddressError', 'bad');
      let user = project.byEmail(email);
      // Email-based project: an unknown email creates the user.
      if (!user) project.users.push((user = { email: email.toLowerCase(), data: {} }));
      return user;
    }
    if (typeof b.userId !== 'string' || !b.userId) throw new Fail(400, 'InvalidUserIdError', 'bad userId');
    let user = project.byUserId(b.userId);
    if (!user && create) {
      project.users.push((user = { email: `${b.userId}@placeholder.email`, userId: b.userId, data: {} }));
    }
    return user;
  }

  /** Writes dataFields; false when a value's type does not match the field's. */
  private write(
    project: FakeProject,
    user: FakeUser,
    dataFields: unknown,
    createNewFields: unknown,
  ): string[] {
    if (dataFields === undefined) return [];
    if (typeof dataFields !== 'object' || dataFields === null || Array.isArray(dataFields)) {
      throw new Fail(400, 'BadJsonBody', 'dataFields must be an object');
    }
    const filtered: string[] = [];
    for (const [k, v] of Object.entries(dataFields)) {
      const type = typeof v === 'string' ? 'string' : typeof v === 'number' ? 'double' : 'object';
      const known = project.fields.get(k);
      if (known && known !== type)
        throw new Fail(400, 'RequestFieldsTypesMismatched', `Field ${k} is ${known}`);
      if (!known) {
        if (createNewFields === false || (createNewFields === undefined && !project.acceptNewFields)) {
          filtered.push(k);
          continue;
        }
        project.fields.set(k, type);
      }
      user.data[k] = v;
    }
    return filtered;
  }

  private bulkUpdate(project: FakeProject, b: Record<string, unknown>) {
    if (!Array.isArray(b.users)) throw new Fail(400, 'BadJsonBody', 'users must be an array');
    const failed: Record<string, string[]> = {};
    const fail = (list: string, id: string) => (failed[list] ??= []).push(id);
    const filteredOut = new Set<string>();
    let successCount = 0;
    for (const u of b.users as unknown[]) {
      const row = object(u, BULK_USER_KEYS);
      const byEmail = row.email !== undefined;
      const id = String(byEmail ? row.email : row.userId);
      let user: FakeUser | undefined;
      try {
        user = this.identify(project, row, row.preferUserId === true);
      } catch (err) {
        if (!(err instanceof Fail) || err.code === 'BadParams') throw err;
        fail(byEmail ? 'invalidEmails' : 'invalidUserIds', id);
        continue;
      }
      if (!user) {
        fail('invalidUserIds', id); // unknown userId: not created without preferUserId
        continue;
      }
      if (project.forgotten.has(user)) {
        fail(byEmail ? 'forgottenEmails' : 'forgottenUserIds', id);
        continue;
      }
      try {
        for (const f of this.write(project, user, row.dataFields, b.createNewFields)) filteredOut.add(f);
      } catch (err) {
        if (!(err instanceof Fail)) throw err;
        fail(byEmail ? 'invalidDataEmails' : 'invalidDataUserIds', id);
        continue;
      }
      successCount++;
    }
    if (this.malformed) return { success: true };
    const failCount = Object.values(failed).reduce((n, l) => n + l.length, 0);
    return {
      successCount,
      failCount,
      invalidEmails: failed.invalidEmails ?? [],
      invalidUserIds: failed.invalidUserIds ?? [],
      failedUpdates: failed,
      createdFields: [],
      filteredOutFields: [...filteredOut],
    };
  }

  private startExport(project: FakeProject, b: Record<string, unknown>) {
    if (typeof b.dataTypeName !== 'string' || typeof b.outputFormat !== 'string') {
      throw new Fail(400, 'BadParams', 'dataTypeName and outputFormat are required');
    }
    if (b.dataTypeName !== 'user' || b.outputFormat !== 'application/x-json-stream') {
      throw new Fail(400, 'BadParams', 'this fake exports users as application/x-json-stream only');
    }
    if (b.onlyFields !== undefined && typeof b.onlyFields !== 'string') {
      throw new Fail(400, 'BadJsonBody', 'onlyFields must be a comma-separated string');
    }
    const only = typeof b.onlyFields === 'string' ? b.onlyFields.split(',') : undefined;
    const job: Job = { id: this.nextJob++, project, polls: 0, files: [] };
    // A snapshot, ordered as stored (new users append at the end).
    for (let i = 0; i < project.users.length; i += this.fileLines) {
      const lines = project.users.slice(i, i + this.fileLines).map((u) => {
        const row: Record<string, unknown> = { ...u.data, email: u.email, userId: u.userId };
        for (const k of Object.keys(row))
          if ((only && !only.includes(k)) || row[k] === undefined) delete row[k];
        return JSON.stringify(row) + '\n';
      });
      job.files.push({
        file: `file-${1679086247925 + job.files.length}.json`,
        token: randomBytes(12).toString('hex'),
        content: Buffer.from(lines.join('')),
      });
    }
    this.jobs.set(job.id, job);
    return { jobId: job.id };
  }

  private download(token: string, req: http.IncomingMessage, res: http.ServerResponse) {
    const file = [...this.jobs.values()].flatMap((j) => j.files).find((f) => f.token === token);
    if (!file) {
      res.writeHead(403, { 'content-type': 'application/xml' });
      return res.end('<Error><Code>AccessDenied</Code></Error>');
    }
    const range = /^bytes=(\d+)-(\d*)$/.exec(String(req.headers.range ?? ''));
    if (!range || this.ignoreRange) {
      res.writeHead(200, { 'content-length': file.content.length });
      return res.end(file.content);
    }
    const start = Number(range[1]);
    if (start >= file.content.length) {
      res.writeHead(416, { 'content-range': `bytes */${file.content.length}` });
      return res.end();
    }
    const end = Math.min(range[2] ? Number(range[2]) : Infinity, file.content.length - 1);
    res.writeHead(206, { 'content-range': `bytes ${start}-${end}/${file.content.length}` });
    res.end(file.content.subarray(start, end + 1));
  }
}

/** An object with only the allowed keys, else Iterable's 400. */
function object(value: unknown, allowed: Set<string>): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new Fail(400, 'BadJsonBody', 'Expected a JSON object');
  }
  for (const k of Object.keys(value))
    if (!allowed.has(k)) throw new Fail(400, 'BadJsonBody', `Unknown field ${k}`);
  return value as Record<string, unknown>;
}
