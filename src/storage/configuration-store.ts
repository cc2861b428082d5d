import { randomBytes } from 'node:crypto';
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
});

/** An alert decided together with the status change that causes it, sent after the change is saved. */
export const pendingAlertSchema = z.object({
  id: z.string().max(64),
  status: z.enum(['needs_reauth', 'active', 'run_failed', 'run_recovered']),
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
  /** Alerts decided but not yet sent (a crash between the two sends them on the next try). */
  alertOutbox: z.array(pendingAlertSchema).max(20).optional(),
  createdAt: z.iso.datetime(),
  updatedAt: z.iso.datetime(),
});
export type Configuration = z.infer<typeof configurationSchema>;

export type NewConfiguration = Omit<Configuration, 'id' | 'createdAt' | 'updatedAt' | 'credentialsSecretId'>;

const MAX_UPDATE_ATTEMPTS = 10;

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
    await this.blobs.put(ConfigurationStore.key(id), serialize(configuration), {
      ifNoneMatch: '*',
      contentType: 'application/json',
    });
    return configuration;
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

  async list(): Promise<Configuration[]> {
    const keys = await this.blobs.list('configurations/');
    const ids = keys.map((k) => k.slice('configurations/'.length, -'.json'.length));
    return Promise.all(ids.map((id) => this.get(id)));
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

function serialize(configuration: Configuration): string {
  return JSON.stringify(configuration, null, 2) + '\n';
}
