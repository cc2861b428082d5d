// Account settings as the config file, POST /_sandbox/accounts and PATCH .../settings take them:
// one schema, and one rule for applying them (a profile first, then the figures given).
import { z } from 'zod';
import { PROFILE_NAMES, profileSettings, type ProfileName } from './profiles';
import type { AccountSettings } from './account-settings';

const share = z.number().min(0).max(1);
const requestLimit = z
  .object({
    requestsPerSecond: z.number().min(0),
    concurrency: z.number().int().min(0),
    windowSeconds: z.number().min(1).max(3600),
  })
  .partial()
  .strict();

export const settingsSchema = z
  .object({
    profile: z.enum(PROFILE_NAMES as [string, ...string[]]),
    limits: requestLimit.extend({ listing: requestLimit, writing: requestLimit }).partial().strict(),
    pageSize: z.number().int().min(1).max(10_000),
    batchSize: z.number().int().min(1).max(100_000),
    faults: z
      .object({
        latencyMs: z.number().min(0).max(60_000),
        latencySigma: z.number().min(0).max(3),
        errorRate: share,
        rateLimitRate: share,
        timeoutRate: share,
        rowRejectRate: share,
      })
      .partial()
      .strict(),
    tokenLifetimeSeconds: z.number().int().min(1),
    refreshTokenReuseDetection: z.boolean(),
  })
  .partial()
  .strict();

export type SettingsChange = z.infer<typeof settingsSchema>;

/** `current` with `change` applied: a named profile replaces limits, page and batch sizes first. */
export function applySettings(current: AccountSettings, change: SettingsChange): AccountSettings {
  const base = change.profile
    ? { ...current, ...profileSettings(change.profile as ProfileName), profile: change.profile }
    : current;
  const { listing, writing, ...shared } = change.limits ?? {};
  const limits = { ...base.limits, ...shared };
  if (listing) limits.listing = { requestsPerSecond: 0, concurrency: 0, ...limits.listing, ...listing };
  if (writing) limits.writing = { requestsPerSecond: 0, concurrency: 0, ...limits.writing, ...writing };
  return {
    ...base,
    limits,
    pageSize: change.pageSize ?? base.pageSize,
    batchSize: change.batchSize ?? base.batchSize,
    faults: { ...base.faults, ...change.faults },
    tokenLifetimeSeconds: change.tokenLifetimeSeconds ?? base.tokenLifetimeSeconds,
    refreshTokenReuseDetection: change.refreshTokenReuseDetection ?? base.refreshTokenReuseDetection,
  };
}
