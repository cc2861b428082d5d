// The audit log: who did what to which configuration, when, and from where. One blob per action,
// under a key that sorts newest first, so any process appends without a lock and a page is one
// listing. Shown in /admin (src/web/audit-routes.ts) and by `espresso audit`.
import { randomBytes } from 'node:crypto';
import { userInfo } from 'node:os';
import { sanitize } from '../processors/errors';
import { NotFoundError, type BlobStore } from '../storage';

export const AUDIT_ACTIONS = [
  'connect',
  'reauthorize',
  'disconnect',
  'revoke-link',
  'disable',
  'enable',
  'run',
  'dry-run',
  'retry',
  'schedule-apply',
] as const;
export type AuditAction = (typeof AUDIT_ACTIONS)[number];

export interface AuditEntry {
  at: string;
  /** `operator <user>` (admin page), `cli <os user>`, or `publisher <esp> account <id>` (connect pages). */
  actor: string;
  action: AuditAction;
  configurationId?: string;
  /** What the action started or changed, e.g. the run a retry writes again and its workflow id. */
  detail?: string;
  /** The client's address (admin and connect pages), or `local` for the CLI. */
  address: string;
}

const PREFIX = 'audit/';
/** Sorts newest first: 13 digits of (a date far away − the time, in ms). */
const FAR = 9_999_999_999_999;
export const auditCursorPattern = /^\d{13}_[0-9a-f]{8}\.json$/;

/** Appends one entry. Text that may come from outside is sanitized: no emails, no secrets. */
export async function recordAudit(
  blobs: BlobStore,
  entry: Omit<AuditEntry, 'at'>,
  now = new Date(),
): Promise<void> {
  const full: AuditEntry = {
    at: now.toISOString(),
    ...entry,
    actor: sanitize(entry.actor).slice(0, 200),
    address: entry.address.slice(0, 100),
    ...(entry.detail ? { detail: sanitize(entry.detail).slice(0, 300) } : {}),
  };
  const key = `${PREFIX}${String(FAR - now.getTime()).padStart(13, '0')}_${randomBytes(4).toString('hex')}.json`;
  await blobs.put(key, JSON.stringify(full) + '\n', { ifNoneMatch: '*', contentType: 'application/json' });
}

/** Who an audit entry names for an admin request: the Basic user, or the bearer token's holder. */
export function adminActor(header = ''): string {
  if (!header.startsWith('Basic ')) return 'operator (admin token)';
  const decoded = Buffer.from(header.slice(6), 'base64').toString('utf8');
  return `operator ${decoded.slice(0, Math.max(0, decoded.indexOf(':')))}`;
}

/** Who runs the CLI, for its entries. */
export function cliActor(): string {
  try {
    return `cli ${userInfo().username}`;
  } catch {
    return 'cli (unknown user)';
  }
}

/** At most `limit` entries after the cursor `after`, newest first. */
export async function auditPage(
  blobs: BlobStore,
  page: { after?: string; limit: number },
): Promise<{ entries: AuditEntry[]; next?: string }> {
  const keys = await blobs.listPage(PREFIX, {
    after: page.after ? `${PREFIX}${page.after}` : undefined,
    limit: page.limit + 1,
  });
  const shown = keys.slice(0, page.limit);
  const entries = await Promise.all(
    shown.map(async (key) => {
      try {
        return JSON.parse((await blobs.get(key)).body.toString('utf8')) as AuditEntry;
      } catch (err) {
        if (err instanceof NotFoundError) return undefined;
        throw err;
      }
    }),
  );
  const last = shown[shown.length - 1];
  return {
    entries: entries.filter((e): e is AuditEntry => e !== undefined),
    ...(keys.length > page.limit && last ? { next: last.slice(PREFIX.length) } : {}),
  };
}
