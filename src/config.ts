// Every environment variable espresso reads, validated once. `.env.example` documents each one;
// test/compose.test.ts checks docker-compose.yml only sets variables declared here.
import { isIP } from 'node:net';
import { isAbsolute, resolve } from 'node:path';
import { z } from 'zod';
import { KeyRingError, type KeyRing } from './lib/key-ring';
import { projectRoot } from './paths';
import {
  clientLimitsOf,
  PROFILE_NAMES,
  SANDBOX_PROFILES,
  type ProfileName,
  type SandboxClientLimits,
} from './sandbox/profiles';
import { parseSecretKeys } from './storage/local-secret-store';

/**
 * A completed run whose rejected contacts are more than this percentage of the contacts it wrote
 * or had rejected alerts (ESPRESSO_ALERT_REJECTED_PERCENT).
 */
export const DEFAULT_ALERT_REJECTED_PERCENT = 10;

const port = z.coerce.number().int().min(1).max(65535);
const bool = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'])
  .transform((v) => v === 'true' || v === '1' || v === 'yes');
const hostPort = z.string().regex(/^[^\s:]+:\d{1,5}$/, 'expected host:port, e.g. 127.0.0.1:7233');
const optionalUrl = z.url({ protocol: /^https?$/ }).optional();

export const envSchema = z.object({
  ESPRESSO_DATA_DIR: z.string().min(1).default('.espresso'),
  ESPRESSO_STORAGE: z.enum(['local', 'aws']).default('local'),
  ESPRESSO_S3_BUCKET: z
    .string()
    .regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'not a valid S3 bucket name')
    .optional(),
  ESPRESSO_AWS_ENDPOINT: optionalUrl,
  AWS_REGION: z.string().min(1).default('us-east-1'),
  ESPRESSO_SECRET_PREFIX: z
    .string()
    .regex(/^[A-Za-z0-9/_+=.@-]*$/, 'only letters, digits and /_+=.@- are allowed')
    .default('espresso/'),
  ESPRESSO_SECRET_KEY: z
    .string()
    .transform((v, ctx) => {
      try {
        return parseSecretKeys(v, 'ESPRESSO_SECRET_KEY');
      } catch (err) {
        if (!(err instanceof KeyRingError)) throw err;
        ctx.addIssue({ code: 'custom', message: err.reason });
        return z.NEVER;
      }
    })
    .optional(),
  TEMPORAL_ADDRESS: hostPort.default('127.0.0.1:7233'),
  TEMPORAL_NAMESPACE: z.string().min(1).default('default'),
  TEMPORAL_CLI_PATH: z.string().min(1).optional(),
  ESPRESSO_TEMPORAL_EMBEDDED: bool.default(true),
  ESPRESSO_TEMPORAL_UI_PORT: port.default(8233),
  ESPRESSO_TEMPORAL_UI_URL: optionalUrl,
  ESPRESSO_WEB_HOST: z.string().min(1).default('127.0.0.1'),
  ESPRESSO_WEB_PORT: port.default(3000),
  ESPRESSO_PUBLIC_URL: optionalUrl,
  ESPRESSO_TRUST_PROXY: z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (!v || v === 'false') return false;
      if (/^\d+$/.test(v)) return Number(v);
      const named = new Set(['loopback', 'linklocal', 'uniquelocal']);
      for (const entry of v.split(',').map((x) => x.trim())) {
        const [address, bits] = entry.split('/');
        const ok =
          named.has(entry) || (isIP(address ?? '') && (bits === undefined || /^\d{1,3}$/.test(bits)));
        if (!ok) {
          ctx.addIssue({
            code: 'custom',
            message: `${JSON.stringify(entry)} is not a hop count, an address, a subnet (10.0.0.0/8) or loopback/linklocal/uniquelocal`,
          });
          return z.NEVER;
        }
      }
      return v;
    }),
  ESPRESSO_SESSION_SECRET: z.string().min(32, 'must be at least 32 characters').optional(),
  ESPRESSO_ADMIN_USER: z.string().min(1).optional(),
  ESPRESSO_ADMIN_PASSWORD: z.string().min(12, 'must be at least 12 characters').optional(),
  ESPRESSO_ADMIN_TOKEN: z.string().min(24, 'must be at least 24 characters').optional(),
  ESPRESSO_LOG_LEVEL: z.enum(['debug', 'info', 'warn', 'error']).default('info'),
  ESPRESSO_SCHEDULE_TIME: z
    .string()
    .regex(/^([01]\d|2[0-3]):[0-5]\d$/, 'expected HH:MM (24-hour, UTC), e.g. 06:00')
    .default('06:00'),
  ESPRESSO_ALERT_WEBHOOK_URL: optionalUrl,
  ESPRESSO_ALERT_REJECTED_PERCENT: z
    .string()
    .regex(/^\d{1,3}(\.\d+)?$/, 'expected a percentage from 0 to 100, e.g. 10')
    .transform(Number)
    .refine((n) => n <= 100, 'expected a percentage from 0 to 100, e.g. 10')
    .default(DEFAULT_ALERT_REJECTED_PERCENT),
  ESPRESSO_DAILY_CONCURRENCY: z.coerce.number().int().min(1).max(1_000).optional(),
  ESPRESSO_METRICS_PORT: port.optional(),
  ESPRESSO_METRICS_HOST: z.string().min(1).default('127.0.0.1'),
  ESPRESSO_ESP_TIMEOUT_MS: z.coerce.number().int().min(100).max(300_000).default(30_000),
  ESPRESSO_SHUTDOWN_GRACE_MS: z.coerce.number().int().min(0).max(300_000).default(15_000),
  ESPRESSO_PAYLOAD_KEYS: z
    .string()
    .regex(
      /^\s*[A-Za-z0-9_.-]{1,64}:[A-Za-z0-9+/=]{43,44}\s*(,\s*[A-Za-z0-9_.-]{1,64}:[A-Za-z0-9+/=]{43,44}\s*)*$/,
      'expected <key id>:<32-byte base64 key>[,<key id>:<key>...], the first one encrypting',
    )
    .optional(),
  ESPRESSO_ALLOW_PLAINTEXT_PAYLOADS: bool.default(false),
  ESPRESSO_MAILCHIMP_CLIENT_ID: z.string().min(1).optional(),
  ESPRESSO_MAILCHIMP_CLIENT_SECRET: z.string().min(1).optional(),
  ESPRESSO_HUBSPOT_CLIENT_ID: z.string().min(1).optional(),
  ESPRESSO_HUBSPOT_CLIENT_SECRET: z.string().min(1).optional(),
  ESPRESSO_KIT_CLIENT_ID: z.string().min(1).optional(),
  ESPRESSO_KIT_CLIENT_SECRET: z.string().min(1).optional(),
  ESPRESSO_BEEHIIV_CLIENT_ID: z.string().min(1).optional(),
  ESPRESSO_BEEHIIV_CLIENT_SECRET: z.string().min(1).optional(),
  ESPRESSO_SANDBOX_ENABLED: bool.default(true),
  ESPRESSO_SANDBOX_HOST: z.string().min(1).default('127.0.0.1'),
  ESPRESSO_SANDBOX_PORT: port.default(4010),
  ESPRESSO_SANDBOX_URL: optionalUrl,
  ESPRESSO_SANDBOX_SNAPSHOT: z.string().min(1).optional(),
  ESPRESSO_SANDBOX_CONFIG: z.string().min(1).optional(),
  ESPRESSO_SANDBOX_ADMIN_TOKEN: z.string().min(24, 'must be at least 24 characters').optional(),
  ESPRESSO_SANDBOX_SEED_CONTACTS: z.coerce.number().int().min(0).max(50_000_000).default(1000),
  ESPRESSO_SANDBOX_CLIENT_PROFILE: z.enum(PROFILE_NAMES as [ProfileName, ...ProfileName[]]).optional(),
  ESPRESSO_SANDBOX_CLIENT_RPS: z.coerce.number().positive().optional(),
  ESPRESSO_SANDBOX_CLIENT_CONCURRENCY: z.coerce.number().int().min(1).max(256).optional(),
  ESPRESSO_SANDBOX_CLIENT_LIST_RPS: z.coerce.number().positive().optional(),
  ESPRESSO_SANDBOX_CLIENT_WRITE_RPS: z.coerce.number().positive().optional(),
});

export type Env = z.infer<typeof envSchema>;

export interface AppConfig {
  dataDir: string;
  storage:
    | { kind: 'local'; blobDir: string; secretDir: string; secretKeys?: KeyRing; secretKeyFile: string }
    | { kind: 'aws'; bucket: string; region: string; endpoint?: string; secretPrefix: string };
  temporal: {
    address: string;
    namespace: string;
    cliPath?: string;
    embedded: boolean;
    uiPort: number;
    uiUrl: string;
  };
  web: {
    host: string;
    port: number;
    /** Where browsers reach the web server: OAuth redirect URIs and links are built from it. */
    publicUrl: string;
    /** Whose X-Forwarded-For to believe (a hop count or addresses); false: nobody's. */
    trustProxy: false | number | string;
    /** Signs OAuth states and CSRF tokens. Default: a generated key file in the data dir. */
    sessionSecret?: string;
    sessionSecretFile: string;
    admin: { user?: string; password?: string; token?: string };
  };
  sandbox: {
    enabled: boolean;
    host: string;
    port: number;
    /** Where processors and browsers reach the Sandbox ESP. */
    url: string;
    snapshotFile?: string;
    configFile?: string;
    seedContacts: number;
    /** Bearer token of the admin API (/_sandbox). Default: a generated key file in the data dir. */
    adminToken?: string;
    adminTokenFile: string;
    /** The limits the Sandbox processor keeps within, like a real ESP's documented limits. */
    client: SandboxClientLimits;
  };
  logLevel: Env['ESPRESSO_LOG_LEVEL'];
  /** Daily run time, UTC. */
  schedule: { hour: number; minute: number; dailyConcurrency?: number };
  alertWebhookUrl?: string;
  /** A completed run rejecting more than this percentage of the contacts it wrote alerts, once per change. */
  alertRejectedPercent: number;
  /** How long one ESP request may take before it counts as a (retryable) timeout. */
  espTimeoutMs: number;
  /** Worker shutdown: in-flight activities get this long to finish (below the supervisor's 20 s). */
  shutdownGraceMs: number;
  /** The worker's Prometheus endpoint; off when no port is set. */
  metrics?: { host: string; port: number };
  /** Payload encryption keys (`id:base64,...`); default: the secret store's `payload-keys` entry. */
  payloadKeys?: string;
  /** Workers run unencrypted payloads too: only while migrating histories from before encryption. */
  allowPlaintextPayloads: boolean;
  /** OAuth apps registered with ESPs; an ESP without one connects with an API key only. */
  oauthApps: Partial<Record<OAuthEsp, { clientId: string; clientSecret: string }>>;
}

/** ESPs whose publishers can sign in with OAuth once espresso's app is registered with them. */
export const OAUTH_ESPS = ['mailchimp', 'hubspot', 'kit', 'beehiiv'] as const;
export type OAuthEsp = (typeof OAUTH_ESPS)[number];

/**
 * The Sandbox processor's limits: the named profile's (ESPRESSO_SANDBOX_CLIENT_PROFILE), with any
 * figure set on its own taking precedence; without a profile, 1,000 requests/s and 8 in flight.
 */
function sandboxClient(e: Env): SandboxClientLimits {
  const profile = e.ESPRESSO_SANDBOX_CLIENT_PROFILE;
  const base = profile
    ? clientLimitsOf(SANDBOX_PROFILES[profile])
    : { rateLimit: { requests: 1000, perMs: 1000 }, concurrency: 8, pageSize: 1000, batchSize: 500 };
  const perSecond = (requests: number | undefined) => (requests ? { requests, perMs: 1000 } : undefined);
  const listing = perSecond(e.ESPRESSO_SANDBOX_CLIENT_LIST_RPS) ?? base.listing;
  const writing = perSecond(e.ESPRESSO_SANDBOX_CLIENT_WRITE_RPS) ?? base.writing;
  return {
    ...base,
    rateLimit: perSecond(e.ESPRESSO_SANDBOX_CLIENT_RPS) ?? base.rateLimit,
    concurrency: e.ESPRESSO_SANDBOX_CLIENT_CONCURRENCY ?? base.concurrency,
    ...(listing ? { listing } : {}),
    ...(writing ? { writing } : {}),
  };
}

/** Where an ESP sends the browser back after consent: the redirect URI registered with its OAuth app. */
export function oauthRedirectUri(publicUrl: string, esp: string): string {
  return `${publicUrl}/auth/${encodeURIComponent(esp)}/callback`;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): AppConfig {
  // Empty strings (e.g. `FOO=` in a .env file) mean "unset", so defaults apply.
  const present = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const parsed = envSchema.safeParse(present);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`);
    throw new ConfigError(`invalid configuration:\n${lines.join('\n')}`);
  }
  const e = parsed.data;
  const oauthApps: AppConfig['oauthApps'] = {};
  for (const esp of OAUTH_ESPS) {
    const prefix = `ESPRESSO_${esp.toUpperCase()}_CLIENT`;
    const clientId = e[`${prefix}_ID` as keyof Env] as string | undefined;
    const clientSecret = e[`${prefix}_SECRET` as keyof Env] as string | undefined;
    if (!!clientId !== !!clientSecret) {
      throw new ConfigError(`invalid configuration:\n  ${prefix}_ID / ${prefix}_SECRET: set both or neither`);
    }
    if (clientId && clientSecret) oauthApps[esp] = { clientId, clientSecret };
  }
  if (!!e.ESPRESSO_ADMIN_USER !== !!e.ESPRESSO_ADMIN_PASSWORD) {
    throw new ConfigError(
      'invalid configuration:\n  ESPRESSO_ADMIN_USER / ESPRESSO_ADMIN_PASSWORD: set both or neither',
    );
  }
  const dataDir = isAbsolute(e.ESPRESSO_DATA_DIR)
    ? e.ESPRESSO_DATA_DIR
    : resolve(projectRoot, e.ESPRESSO_DATA_DIR);
  let storage: AppConfig['storage'];
  if (e.ESPRESSO_STORAGE === 'aws') {
    if (!e.ESPRESSO_S3_BUCKET) {
      throw new ConfigError(
        'invalid configuration:\n  ESPRESSO_S3_BUCKET: required when ESPRESSO_STORAGE=aws',
      );
    }
    storage = {
      kind: 'aws',
      bucket: e.ESPRESSO_S3_BUCKET,
      region: e.AWS_REGION,
      endpoint: e.ESPRESSO_AWS_ENDPOINT,
      secretPrefix: e.ESPRESSO_SECRET_PREFIX,
    };
  } else {
    storage = {
      kind: 'local',
      blobDir: resolve(dataDir, 'blobs'),
      secretDir: resolve(dataDir, 'secrets'),
      secretKeys: e.ESPRESSO_SECRET_KEY,
      secretKeyFile: resolve(dataDir, 'secret.key'),
    };
  }
  return {
    dataDir,
    storage,
    temporal: {
      address: e.TEMPORAL_ADDRESS,
      namespace: e.TEMPORAL_NAMESPACE,
      cliPath: e.TEMPORAL_CLI_PATH,
      embedded: e.ESPRESSO_TEMPORAL_EMBEDDED,
      uiPort: e.ESPRESSO_TEMPORAL_UI_PORT,
      uiUrl: e.ESPRESSO_TEMPORAL_UI_URL ?? `http://localhost:${e.ESPRESSO_TEMPORAL_UI_PORT}`,
    },
    web: {
      host: e.ESPRESSO_WEB_HOST,
      port: e.ESPRESSO_WEB_PORT,
      publicUrl: (e.ESPRESSO_PUBLIC_URL ?? `http://localhost:${e.ESPRESSO_WEB_PORT}`).replace(/\/$/, ''),
      trustProxy: e.ESPRESSO_TRUST_PROXY,
      sessionSecret: e.ESPRESSO_SESSION_SECRET,
      sessionSecretFile: resolve(dataDir, 'session.key'),
      admin: {
        user: e.ESPRESSO_ADMIN_USER,
        password: e.ESPRESSO_ADMIN_PASSWORD,
        token: e.ESPRESSO_ADMIN_TOKEN,
      },
    },
    sandbox: {
      enabled: e.ESPRESSO_SANDBOX_ENABLED,
      host: e.ESPRESSO_SANDBOX_HOST,
      port: e.ESPRESSO_SANDBOX_PORT,
      url: (e.ESPRESSO_SANDBOX_URL ?? `http://127.0.0.1:${e.ESPRESSO_SANDBOX_PORT}`).replace(/\/$/, ''),
      snapshotFile: e.ESPRESSO_SANDBOX_SNAPSHOT && resolve(dataDir, e.ESPRESSO_SANDBOX_SNAPSHOT),
      configFile: e.ESPRESSO_SANDBOX_CONFIG && resolve(projectRoot, e.ESPRESSO_SANDBOX_CONFIG),
      seedContacts: e.ESPRESSO_SANDBOX_SEED_CONTACTS,
      adminToken: e.ESPRESSO_SANDBOX_ADMIN_TOKEN,
      adminTokenFile: resolve(dataDir, 'sandbox-admin.key'),
      client: sandboxClient(e),
    },
    logLevel: e.ESPRESSO_LOG_LEVEL,
    schedule: {
      hour: Number(e.ESPRESSO_SCHEDULE_TIME.slice(0, 2)),
      minute: Number(e.ESPRESSO_SCHEDULE_TIME.slice(3)),
      dailyConcurrency: e.ESPRESSO_DAILY_CONCURRENCY,
    },
    alertWebhookUrl: e.ESPRESSO_ALERT_WEBHOOK_URL,
    alertRejectedPercent: e.ESPRESSO_ALERT_REJECTED_PERCENT,
    espTimeoutMs: e.ESPRESSO_ESP_TIMEOUT_MS,
    shutdownGraceMs: e.ESPRESSO_SHUTDOWN_GRACE_MS,
    metrics: e.ESPRESSO_METRICS_PORT
      ? { host: e.ESPRESSO_METRICS_HOST, port: e.ESPRESSO_METRICS_PORT }
      : undefined,
    payloadKeys: e.ESPRESSO_PAYLOAD_KEYS,
    allowPlaintextPayloads: e.ESPRESSO_ALLOW_PLAINTEXT_PAYLOADS,
    oauthApps,
  };
}
