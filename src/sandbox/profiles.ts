// Named profiles: a Sandbox account that answers like a real ESP account, with that ESP's documented
// limits, page size and batch size. Every figure's source is in docs/sandbox.md ("Profiles"). What the
// vendor does not publish is left out (0 = no limit), except where docs/sandbox.md says otherwise.
import type { AccountSettings, RequestLimit } from './account-settings';

export type ProfileSettings = Pick<AccountSettings, 'limits' | 'pageSize' | 'batchSize'>;

export const SANDBOX_PROFILES = {
  // 190 requests per 10 s per account; CRM search 5 requests/s, 200 results a page; batch update 100.
  'hubspot-pro': {
    limits: {
      requestsPerSecond: 19,
      windowSeconds: 10,
      concurrency: 0,
      listing: { requestsPerSecond: 5, concurrency: 0 },
    },
    pageSize: 200,
    batchSize: 100,
  },
  // No request rate published: 10 simultaneous connections; 1,000 members a page; 500 per batch.
  mailchimp: {
    limits: { requestsPerSecond: 0, concurrency: 10 },
    pageSize: 1000,
    batchSize: 500,
  },
  // Get Profiles and Update Profile, each its own 700/min steady limit (fixed windows; the 75/s
  // burst never binds a paced client); 100 profiles a page; Update Profile takes one profile.
  klaviyo: {
    limits: {
      requestsPerSecond: 0,
      concurrency: 0,
      listing: { requestsPerSecond: 700 / 60, windowSeconds: 60, concurrency: 0 },
      writing: { requestsPerSecond: 700 / 60, windowSeconds: 60, concurrency: 0 },
    },
    pageSize: 100,
    batchSize: 1,
  },
  // No number published per endpoint (600/min is the documented v2 default); upserts of 30,000.
  sendgrid: {
    limits: { requestsPerSecond: 10, windowSeconds: 60, concurrency: 0 },
    pageSize: 1000,
    batchSize: 30_000,
  },
  // bulkUpdate 5 requests/s per project; the export is read from files, which the API does not limit.
  iterable: {
    limits: { requestsPerSecond: 0, concurrency: 0, writing: { requestsPerSecond: 5, concurrency: 0 } },
    pageSize: 1000,
    batchSize: 1000,
  },
} satisfies Record<string, ProfileSettings>;

export type ProfileName = keyof typeof SANDBOX_PROFILES;
export const PROFILE_NAMES = Object.keys(SANDBOX_PROFILES) as ProfileName[];

export function isProfileName(name: string): name is ProfileName {
  return Object.hasOwn(SANDBOX_PROFILES, name);
}

/** A copy of the profile's settings, safe to change. */
export function profileSettings(name: ProfileName): ProfileSettings {
  return structuredClone(SANDBOX_PROFILES[name]) as ProfileSettings;
}

type Rate = { requests: number; perMs: number };

/** What a client keeps within to never be refused by an account with these settings. */
export interface SandboxClientLimits {
  rateLimit: Rate;
  concurrency: number;
  listing?: Rate;
  writing?: Rate;
  pageSize: number;
  batchSize: number;
}

/** Unlimited figures become the client's defaults: 1,000 requests/s, 8 in flight. */
export function clientLimitsOf(settings: ProfileSettings): SandboxClientLimits {
  const { limits } = settings;
  return {
    rateLimit: rateOf(limits) ?? { requests: 1000, perMs: 1000 },
    concurrency: limits.concurrency || 8,
    ...(rateOf(limits.listing) ? { listing: rateOf(limits.listing) } : {}),
    ...(rateOf(limits.writing) ? { writing: rateOf(limits.writing) } : {}),
    pageSize: settings.pageSize,
    batchSize: settings.batchSize,
  };
}

function rateOf(limit: RequestLimit | undefined): Rate | undefined {
  if (!limit || limit.requestsPerSecond <= 0) return undefined;
  const seconds = limit.windowSeconds ?? 1;
  return { requests: Math.round(limit.requestsPerSecond * seconds), perMs: seconds * 1000 };
}
