import http from 'node:http';
import https from 'node:https';
import axios, { type AxiosInstance } from 'axios';
import {
  errorFromNetwork,
  errorFromResponse,
  RateLimitedError,
  sanitize,
  TransientError,
  type HttpOutcome,
} from './errors';
import type { EspMetrics } from '../metrics';

export interface EspRequest {
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  url: string;
  headers?: Record<string, string>;
  query?: Record<string, string | number | boolean | undefined>;
  json?: unknown;
  form?: Record<string, string>;
}

export interface EspResponse<T = unknown> {
  status: number;
  headers: Record<string, string | undefined>;
  body: T;
}

export interface SendOptions {
  /** Paces the request with the ESP account's other requests; told of a 429's delay. */
  pacer?: { run<T>(fn: () => Promise<T>): Promise<T>; pause(ms: number): void };
  /** The ESP's id, for metrics. */
  esp?: string;
  /** Values that must never appear in an error message (tokens, keys). */
  secrets?: readonly string[];
  /** Reads the ESP's pointers to offending rows out of a whole-batch rejection. */
  rowsFromError?: (body: unknown) => number[] | undefined;
  /** Reads the delay out of a 429's body, for ESPs that announce it there instead of in headers. */
  retryAfterFromBody?: (body: unknown) => number | undefined;
  /**
   * The activity's cancellation: a request still queued for a connection is never sent, and one
   * in flight stops waiting for its answer (a write's outcome is then unknown: the retry, if any,
   * sends the same values).
   */
  signal?: AbortSignal;
}

/** Keep-alive connections are reused across requests to the same ESP host. */
const agents = {
  httpAgent: new http.Agent({ keepAlive: true, maxSockets: 64 }),
  httpsAgent: new https.Agent({ keepAlive: true, maxSockets: 64 }),
};

/** HTTP for processors: every outcome is a parsed JSON body or a typed EspError. */
export class EspHttp {
  private readonly axios: AxiosInstance;

  constructor(
    readonly timeoutMs = 30_000,
    private readonly metrics?: EspMetrics,
  ) {
    this.axios = axios.create({
      ...agents,
      timeout: timeoutMs,
      maxRedirects: 0,
      // Statuses and bodies are interpreted below, not by axios.
      validateStatus: () => true,
      responseType: 'text',
      transformResponse: [(data: unknown) => data],
      // Bodies go out as sendOnce wrote them: axios would parse each JSON body again to check it,
      // which in a large run costs the worker as much CPU as parsing the ESP's answers.
      transformRequest: [(data: unknown) => data],
    });
  }

  async send<T = unknown>(request: EspRequest, options: SendOptions = {}): Promise<EspResponse<T>> {
    const attempt = () => this.sendOnce<T>(request, options);
    try {
      return await (options.pacer ? options.pacer.run(attempt) : attempt());
    } catch (err) {
      if (err instanceof RateLimitedError) options.pacer?.pause(err.retryAfterMs);
      throw err;
    }
  }

  private async sendOnce<T>(request: EspRequest, options: SendOptions): Promise<EspResponse<T>> {
    const headers: Record<string, string> = { accept: 'application/json', ...request.headers };
    let data: string | undefined;
    if (request.json !== undefined) {
      headers['content-type'] ??= 'application/json';
      data = JSON.stringify(request.json);
    } else if (request.form) {
      headers['content-type'] = 'application/x-www-form-urlencoded';
      data = new URLSearchParams(request.form).toString();
    }
    let res;
    const started = performance.now();
    const observe = (status: string) => {
      if (!this.metrics || !options.esp) return;
      this.metrics.requests.inc({ esp: options.esp, status });
      this.metrics.duration.observe({ esp: options.esp }, (performance.now() - started) / 1000);
      if (status === '429') this.metrics.rateLimited.inc({ esp: options.esp });
    };
    try {
      res = await this.axios.request<string>({
        method: request.method,
        url: request.url,
        signal: options.signal,
        headers,
        data,
        params:
          request.query &&
          Object.fromEntries(Object.entries(request.query).filter(([, v]) => v !== undefined)),
      });
    } catch (err) {
      options.signal?.throwIfAborted();
      observe('network');
      throw errorFromNetwork((err as { code?: string }).code, this.timeoutMs);
    }
    observe(String(res.status));
    const responseHeaders = Object.fromEntries(
      Object.entries(res.headers).map(([k, v]) => [k.toLowerCase(), v === undefined ? undefined : String(v)]),
    );
    const text = typeof res.data === 'string' ? res.data : '';
    const outcome: HttpOutcome = {
      status: res.status,
      headers: responseHeaders,
      body: parseJson(text),
      text,
    };
    const secrets = options.secrets ?? [];
    if (res.status >= 200 && res.status < 300) {
      if (text.trim() !== '' && outcome.body === undefined) {
        throw new TransientError(
          `ESP sent a malformed response to ${request.method}: ${describeBody(text)}`,
          res.status,
        );
      }
      return { status: res.status, headers: responseHeaders, body: outcome.body as T };
    }
    const reason = sanitize(
      outcome.body !== undefined ? messageOf(outcome.body) : describeBody(text),
      secrets,
    );
    throw errorFromResponse(outcome, reason, {
      rows: options.rowsFromError?.(outcome.body),
      retryAfterMs: res.status === 429 ? options.retryAfterFromBody?.(outcome.body) : undefined,
    });
  }
}

function parseJson(text: string): unknown {
  if (text.trim() === '') return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

function describeBody(text: string): string {
  if (text.trim() === '') return 'an empty body';
  if (/^\s*</.test(text)) return 'an HTML/XML page instead of JSON';
  return 'a body that is not valid JSON (truncated?)';
}

/** The human part of the usual ESP error shapes. */
function messageOf(body: unknown): string {
  if (typeof body !== 'object' || body === null) return String(body);
  const b = body as Record<string, unknown>;
  const error = b.error;
  if (typeof error === 'object' && error !== null) {
    const e = error as Record<string, unknown>;
    return String(e.message ?? e.code ?? JSON.stringify(e));
  }
  const first = Array.isArray(b.errors) ? (b.errors[0] as Record<string, unknown> | undefined) : undefined;
  const text =
    b.error_description ??
    b.message ??
    b.msg ??
    b.detail ??
    first?.detail ??
    first?.message ??
    b.title ??
    error;
  return text === undefined ? JSON.stringify(body) : String(text);
}
