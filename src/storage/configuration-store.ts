import { createHash, randomBytes } from 'node:crypto';
import { z } from 'zod';
import type { BlobStore } from './blob-store';
import { ConflictError, CorruptDataError, NotFoundError } from './errors';

export const configurationStatus = z.enum(['active', 'needs_reauth', 'disabled']);
export type ConfigurationStatus = z.infer<typeof configurationStatus>;

export const configurationIdSchema = z
  .string()
  .regex(
    /^cfg_[a-z0-9]{8,32}$/,
    'a configuration id looks like cfg_ followed by 8-32 lowercase letters/digits',
  );

/** The newest run of a configuration, kept in its document so pages need no run files. Counts only. */
export const lastRunSchema = z.object({
  status: z.string().max(40),
  /** The run's folder under runs/<id>/. */
  run: z.string().max(80),
  workflowId: z.string().max(300),
  finishedAt: z.iso.datetime(),
  dryRun: z.boolean(),
  updated: z.number().int().min(0),
  rejected: z.number().int().min(0),
  reason: z.string().max(500).optional(),
  /** What it did beyond its counts (e.g. `would create field lcee`): src/runs/report.ts. */
  notes: z.array(z.string().max(200)).max(10).optional(),
});

/** An alert decided together with the status change that causes it, sent after the change is saved. */
export const pendingAlertSchema = z.object({
  id: z.string().max(64),
  status: z.enum([
    'needs_reauth',
    'active',
    'run_failed',
    'run_recovered',
    'rejections_high',
    'rejections_recovered',
  ]),
  message: z.string().max(1000),
});

/** One connected ESP account. Non-secret: credentials live in the SecretStore under credentialsSecretId. */
export const configurationSchema = z.object({
  id: configurationIdSchema,
  esp: z.string().min(1).max(40),
  accountLabel: z.string().min(1).max(200),
  espAccountId: z.string().min(1).max(200),
  espListId: z.string().min(1).max(200).optional(),
  /** ESP API base URL when it depends on the account (data center, region). */
  apiBaseUrl: z.url().optional(),
  fieldName: z.string().min(1).max(100),
  status: configurationStatus,
  /** Why the status is what it is (e.g. the ESP's answer that made it needs_reauth). */
  statusReason: z.string().max(500).optional(),
  maintenance: z.boolean(),
  credentialsSecretId: z.string().min(1),
  lastRun: lastRunSchema.optional(),
  /** Whether its runs complete: `failing` from a failed, timed-out or cancelled run to the next completed one. */
  runHealth: z.enum(['ok', 'failing']).optional(),
  /** Whether its last completed run that wrote anything rejected more than the alert threshold. */
  rejections: z.enum(['ok', 'high']).optional(),
  /** Alerts decided but not yet sent (a crash between the two sends them on the next try). */
  alertOutbox: z.array(pendingAlertSchema).max(20).optional(),
  createdAt: z.iso.datetime(),
  updatedAt: z.iso.datetime(),
});
export type Configuration = z.infer<typeof configurationSchema>;

export type NewConfiguration = Omit<Configuration, 'id' | 'createdAt' | 'updatedAt' | 'credentialsSecretId'>;

const MAX_UPDATE_ATTEMPTS = 10;
const PREFIX = 'configurations/';
/** One document per ESP account and list, naming its configuration: connects find theirs without a scan. */
const ACCOUNT_INDEX = 'index/accounts/';
/** Written once the index holds every configuration created before it existed. */
const ACCOUNT_INDEX_BUILT = 'index/accounts-built.json';

/** A configuration document that cannot be read, by id, with why. */
export interface UnreadableConfiguration {
  id: string;
  unreadable: string;
}
export type ListedConfigurationDocument = Configuration | UnreadableConfiguration;

export function isUnreadable(c: ListedConfigurationDocument): c is UnreadableConfiguration {
  return 'unreadable' in c;
}

export function credentialsSecretId(configurationId: string): string {
  return `credentials/${configurationId}`;
}

export function newConfigurationId(): string {
  return `cfg_${randomBytes(10).toString('hex')}`;
}

/** Configuration documents at `configurations/<id>.json`; every change is a conditional write. */
export class ConfigurationStore {
  constructor(private readonly blobs: BlobStore) {}

  static key(id: string): string {
    return `configurations/${configurationIdSchema.parse(id)}.json`;
  }

  async get(id: string): Promise<Configuration> {
    return (await this.read(id)).configuration;
  }

  /** `id` may be chosen beforehand (to store credentials under it first); default: a new one. */
  /**
   * Creates the document, and its entry in the account index first: a second configuration of the
   * same ESP account and list is refused with ConflictError (two connects racing make one).
   */
  async create(input: NewConfiguration, options: { id?: string; now?: Date } = {}): Promise<Configuration> {
    const id = options.id ?? newConfigurationId();
    const now = options.now ?? new Date();
    const configuration = configurationSchema.parse({
      ...input,
      id,
      credentialsSecretId: credentialsSecretId(id),
      createdAt: now.toISOString(),
      updatedAt: now.toISOString(),
    });
    await this.blobs.put(accountKey(configuration), JSON.stringify({ configurationId: id }) + '\n', {
      ifNoneMatch: '*',
      contentType: 'application/json',
    });
    await this.blobs.put(ConfigurationStore.key(id), serialize(configuration), {
      ifNoneMatch: '*',
      contentType: 'application/json',
    });
    return configuration;
  }

  /** The configuration of one ESP account and list, if any: one read of the account index. */
  async findByAccount(
    esp: string,
    espAccountId: string,
    espListId?: string,
  ): Promise<Configuration | undefined> {
    const key = accountKey({ esp, espAccountId, espListId });
    const lookup = async () => {
      try {
        const { configurationId } = JSON.parse((await this.blobs.get(key)).body.toString('utf8')) as {
          configurationId: string;
        };
        const found = await this.get(configurationId);
        // An index entry is written before its document: a crash between the two leaves no document.
        return found.esp === esp && found.espAccountId === espAccountId && found.espListId === espListId
          ? found
          : undefined;
      } catch (err) {
        if (err instanceof NotFoundError) return undefined;
        throw err;
      }
    };
    const found = await lookup();
    if (found || (await this.exists(ACCOUNT_INDEX_BUILT))) return found;
    await this.buildAccountIndex();
    return lookup();
  }

  /**
   * One page of documents in id order, after the id `after`. With `match`, only those it accepts,
   * reading at most `scan` documents for the page (the page ends early; `next` continues). Unreadable
   * documents are listed as such (a filter sees them too). `next` is absent after the last page.
   */
  async page(options: {
    after?: string;
    limit: number;
    match?: (c: ListedConfigurationDocument) => boolean;
    scan?: number;
  }): Promise<{ items: ListedConfigurationDocument[]; next?: string }> {
    const items: ListedConfigurationDocument[] = [];
    const scan = options.scan ?? (options.match ? 5_000 : options.limit);
    let after = options.after;
    let read = 0;
    for (;;) {
      const want = Math.min(options.match ? 200 : options.limit - items.length, scan - read);
      const keys = (
        await this.blobs.listPage(PREFIX, { after: after && `${PREFIX}${after}.json`, limit: want })
      ).filter((k) => k.endsWith('.json'));
      const ids = keys.map((k) => k.slice(PREFIX.length, -'.json'.length));
      const docs = await Promise.all(ids.map((id) => this.readListed(id)));
      for (const [i, doc] of docs.entries()) {
        read++;
        after = ids[i];
        if (doc && (!options.match || options.match(doc))) items.push(doc);
        if (items.length >= options.limit) return { items, next: after };
      }
      if (keys.length < want) return { items };
      if (read >= scan) return { items, next: after };
    }
  }

  /** How many configuration documents there are (their keys are counted, none is read). */
  async count(): Promise<number> {
    return (await this.blobs.list(PREFIX)).filter((k) => k.endsWith('.json')).length;
  }

  /** Every configuration (a CLI or test convenience; the daily run and the pages use `page`). */
  async list(): Promise<Configuration[]> {
    const all: Configuration[] = [];
    let after: string | undefined;
    do {
      const page = await this.page({ after, limit: 1_000 });
      for (const c of page.items) if (!isUnreadable(c)) all.push(c);
      after = page.next;
    } while (after);
    return all;
  }

  private async readListed(id: string): Promise<ListedConfigurationDocument | undefined> {
    try {
      return await this.get(id);
    } catch (err) {
      if (err instanceof NotFoundError) return undefined; // removed since it was listed
      if (err instanceof CorruptDataError) return { id, unreadable: err.message };
      if (err instanceof z.ZodError) return { id, unreadable: 'its file name is not a configuration id' };
      throw err;
    }
  }

  private async exists(key: string): Promise<boolean> {
    try {
      await this.blobs.get(key);
      return true;
    } catch (err) {
      if (err instanceof NotFoundError) return false;
      throw err;
    }
  }

  /** Indexes the configurations created before the account index existed (once). */
  private async buildAccountIndex(): Promise<void> {
    for (const c of await this.list()) {
      try {
        await this.blobs.put(accountKey(c), JSON.stringify({ configurationId: c.id }) + '\n', {
          ifNoneMatch: '*',
        });
      } catch (err) {
        if (!(err instanceof ConflictError)) throw err;
      }
    }
    await this.blobs.put(ACCOUNT_INDEX_BUILT, JSON.stringify({ builtAt: new Date().toISOString() }) + '\n');
  }

  /**
   * Applies `change` to the latest document and writes it only if nobody wrote in between;
   * on a lost race it re-reads and applies `change` again, so concurrent updates are never lost.
   */
  async update(
    id: string,
    change: (current: Configuration) => Partial<Omit<Configuration, 'id' | 'createdAt'>>,
  ): Promise<Configuration> {
    for (let attempt = 1; ; attempt++) {
      const { configuration, etag } = await this.read(id);
      const next = configurationSchema.parse({
        ...configuration,
        ...change(configuration),
        id: configuration.id,
        createdAt: configuration.createdAt,
        updatedAt: new Date().toISOString(),
      });
      try {
        await this.blobs.put(ConfigurationStore.key(id), serialize(next), {
          ifMatch: etag,
          contentType: 'application/json',
        });
        return next;
      } catch (err) {
        if (!(err instanceof ConflictError) || attempt >= MAX_UPDATE_ATTEMPTS) throw err;
      }
    }
  }

  private async read(id: string): Promise<{ configuration: Configuration; etag: string }> {
    const key = ConfigurationStore.key(id);
    let blob;
    try {
      blob = await this.blobs.get(key);
    } catch (err) {
      if (err instanceof NotFoundError) throw new NotFoundError('configuration', id);
      throw err;
    }
    let json: unknown;
    try {
      json = JSON.parse(blob.body.toString('utf8'));
    } catch {
      throw new CorruptDataError('configuration', id, 'not valid JSON');
    }
    const parsed = configurationSchema.safeParse(json);
    if (!parsed.success) {
      const first = parsed.error.issues[0];
      throw new CorruptDataError('configuration', id, `${first?.path.join('.')}: ${first?.message}`);
    }
    return { configuration: parsed.data, etag: blob.etag };
  }
}

function accountKey(c: Pick<Configuration, 'esp' | 'espAccountId' | 'espListId'>): string {
  const hash = createHash('sha256')
    .update(`${c.espAccountId}\n${c.espListId ?? ''}`)
    .digest('hex');
  return `${ACCOUNT_INDEX}${c.esp.replace(/[^a-z0-9_-]/gi, '_')}/${hash}.json`;
}

function serialize(configuration: Configuration): string {
  return JSON.stringify(configuration, null, 2) + '\n';
}
