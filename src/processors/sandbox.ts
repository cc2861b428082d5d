// The Sandbox ESP (src/sandbox), connected like any real ESP. Everything it does is in this file.
import { SANDBOX_CLIENT } from '../sandbox/oauth-client';
import { BaseProcessor, type EspCall, type ProcessorDeps } from './base-processor';
import { RequestRejectedError } from './errors';
import { offsetAfter } from './kit/field-create';
import type {
  AccountInfo,
  ContactPage,
  ContactResult,
  ContactUpdate,
  Credentials,
  ListMode,
  ProcessorDescriptor,
  ProcessorTarget,
} from './types';

type Rate = { requests: number; perMs: number };

/** The Sandbox account's limits as the processor keeps within them (config.sandbox.client). */
export interface SandboxProcessorOptions {
  url: string;
  /** Every request. */
  rateLimit: Rate;
  concurrency: number;
  /** Contact pages and batch updates, when the account limits them on their own. */
  listing?: Rate;
  writing?: Rate;
  /** Contacts per listing page and per batch update (the account's pageSize and batchSize). */
  pageSize?: number;
  batchSize?: number;
}

type SandboxRow =
  | { id: string; status: 'updated' }
  | { id: string; status: 'error'; error: { code: string; message: string } };

export class SandboxProcessor extends BaseProcessor {
  readonly descriptor: ProcessorDescriptor;

  constructor(
    deps: ProcessorDeps,
    private readonly options: SandboxProcessorOptions,
  ) {
    super(deps);
    this.descriptor = {
      id: 'sandbox',
      displayName: 'Sandbox ESP',
      oauth2: {
        authorizeUrl: `${options.url}/oauth/authorize`,
        tokenUrl: `${options.url}/oauth/token`,
        scopes: ['contacts.read', 'contacts.write', 'fields.write'],
        pkce: true,
        clientId: SANDBOX_CLIENT.id,
        clientSecret: SANDBOX_CLIENT.secret,
        refreshMarginMs: 60_000,
      },
      apiKey: { label: 'Sandbox API key' },
      maxBatchSize: options.batchSize ?? 500,
      listPageSize: options.pageSize ?? 1000,
      concurrency: options.concurrency,
      rateLimit: options.rateLimit,
      ...namedLimits(options),
      mergeTag: (field) => `{{contact.${field}}}`,
      field: { maxLength: 30, case: 'lower', allowed: /[a-z0-9_]/ },
    };
  }

  /** The named limit a request counts against, when the descriptor declares it. */
  private limitOf(name: 'list' | 'write'): { limit?: string } {
    return this.descriptor.limits?.[name] ? { limit: name } : {};
  }

  protected baseUrl(): string {
    return this.options.url;
  }

  protected override authHeaders(credentials: Credentials): Record<string, string> {
    return credentials.kind === 'apiKey'
      ? { 'x-api-key': credentials.apiKey }
      : { authorization: `Bearer ${credentials.accessToken}` };
  }

  protected async validateCredentials(call: EspCall): Promise<AccountInfo> {
    const account = await call<{ id: string; name: string }>({ method: 'GET', url: '/v1/account' });
    const lists = await call<{ lists: Array<{ id: string; name: string }> }>({
      method: 'GET',
      url: '/v1/lists',
    });
    return {
      accountId: account.body.id,
      accountLabel: account.body.name,
      lists: lists.body.lists.map((l) => ({ id: l.id, name: l.name })),
    };
  }

  protected async ensureField(call: EspCall, target: ProcessorTarget): Promise<'exists' | 'created'> {
    const path = `/v1/lists/${list(target)}/fields`;
    const { body } = await call<{ fields: Array<{ key: string }> }>({ method: 'GET', url: path });
    if (body.fields.some((f) => f.key === target.fieldName)) return 'exists';
    await call({ method: 'POST', url: path, json: { key: target.fieldName, label: 'LiveConnect ID' } });
    return 'created';
  }

  /**
   * Incremental runs page with the Sandbox's cursor, which skips contacts that hold a value; full
   * runs by offset (every contact, in the list's order), so the next page is known before this
   * one answers (pageAfter). A cursor of an earlier version's full run is followed as a cursor.
   */
  protected async fetchContactPage(
    call: EspCall,
    target: ProcessorTarget,
    cursor: string | undefined,
    mode: ListMode,
  ): Promise<ContactPage> {
    const offset = mode === 'full' ? offsetIn(cursor) : undefined;
    const { body } = await call<{
      contacts: Array<{ id: string; fields: Record<string, string | null> }>;
      next_cursor: string | null;
      total?: number;
    }>(
      {
        method: 'GET',
        url: `/v1/lists/${list(target)}/contacts`,
        query: {
          limit: this.descriptor.listPageSize,
          ...(offset === undefined ? { cursor } : { offset }),
          empty: mode === 'incremental' ? target.fieldName : undefined,
        },
      },
      this.limitOf('list'),
    );
    const contacts = body.contacts.map((c) => ({
      contactId: c.id,
      currentValue: c.fields[target.fieldName] ?? undefined,
    }));
    const total = Number.isSafeInteger(body.total) && body.total! >= 0 ? { total: body.total } : {};
    if (!body.next_cursor) return { contacts, ...total };
    return {
      contacts,
      nextCursor: offset === undefined ? body.next_cursor : String(offset + contacts.length),
      ...total,
    };
  }

  override pageAfter(cursor: string | undefined, mode: ListMode, total?: number): string | undefined {
    if (mode !== 'full' || offsetIn(cursor) === undefined) return undefined;
    return offsetAfter(cursor, this.descriptor.listPageSize ?? 1000, total);
  }

  protected async sendBatch(
    call: EspCall,
    target: ProcessorTarget,
    batch: ContactUpdate[],
  ): Promise<ContactResult[]> {
    const { body } = await call<{ results: SandboxRow[] }>(
      {
        method: 'POST',
        url: `/v1/lists/${list(target)}/contacts/batch`,
        json: { updates: batch.map((u) => ({ id: u.contactId, fields: { [target.fieldName]: u.value } })) },
      },
      {
        rowsFromError: (b) => (b as { error?: { rows?: number[] } })?.error?.rows,
        ...this.limitOf('write'),
      },
    );
    return body.results.map((r) =>
      r.status === 'updated'
        ? { contactId: r.id, status: 'updated' }
        : { contactId: r.id, status: 'rejected', reason: `${r.error.code}: ${r.error.message}` },
    );
  }
}

/** Listing and writing limits, declared only when the account has them. */
function namedLimits(options: SandboxProcessorOptions): Pick<ProcessorDescriptor, 'limits'> {
  const limits: NonNullable<ProcessorDescriptor['limits']> = {};
  if (options.listing) limits.list = { ...options.listing, for: 'listing' };
  if (options.writing) limits.write = { ...options.writing, for: 'writing' };
  return Object.keys(limits).length ? { limits } : {};
}

/** The offset a full run's cursor names (none: the first page); undefined for a Sandbox cursor. */
function offsetIn(cursor: string | undefined): number | undefined {
  if (cursor === undefined) return 0;
  return /^\d{1,15}$/.test(cursor) ? Number(cursor) : undefined;
}

function list(target: ProcessorTarget): string {
  if (!target.espListId) throw new RequestRejectedError('the configuration has no Sandbox list selected');
  return encodeURIComponent(target.espListId);
}
