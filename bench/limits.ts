// The benchmark's scenarios on ESP-like limits (docs/performance.md): `splitLimit`, where listing
// and writing are limited apart, and `profiles`, one pipeline run per real-ESP profile. Each run is
// compared with its bound: the least time the requests it needed could take under the account's
// limits, counted on the Sandbox's side.
import { clientLimitsOf, PROFILE_NAMES, SANDBOX_PROFILES, type ProfileName } from '../src/sandbox/profiles';
import type { SettingsChange } from '../src/sandbox/settings';
import type { AccountSettings, RequestLimit } from '../src/sandbox/account-settings';
import { PAGES_AT_ONCE } from '../src/activities/share-sizes';
import { pipeline } from './scenarios';
import type { SandboxAccountConfig, Stack } from './stack';

/** Every limited account answers after 50 ms on average, with a log-normal tail (p99 about 140 ms). */
const LATENCY = { latencyMs: 50, latencySigma: 0.5 };

const SPLIT = {
  id: 'acct_split',
  apiKey: 'split-key-000001',
  settings: {
    limits: {
      requestsPerSecond: 0,
      concurrency: 0,
      listing: { requestsPerSecond: 20, concurrency: 0 },
      writing: { requestsPerSecond: 40, concurrency: 0 },
    },
    faults: LATENCY,
  },
} as const;

/**
 * Contacts per profile run: a bound of about 20-40 s on each (a run of 47 s at most measured on this
 * machine), so every run ends within 60 s, and what a run costs once (its start, the writes after
 * the listing's last page) weighs little beside what it costs per contact (docs/performance.md).
 */
export const PROFILE_CONTACTS: Record<ProfileName, number> = {
  'hubspot-pro': 40_000,
  mailchimp: 600_000,
  klaviyo: 400,
  sendgrid: 200_000,
  iterable: 200_000,
};

const profileAccount = (profile: ProfileName) => ({
  id: `acct_${profile.replace(/-/g, '_')}`,
  apiKey: `${profile}-key-0001`,
});

/** The Sandbox accounts these scenarios run against (bench/stack.ts writes them to its config file). */
export function limitedAccounts(): SandboxAccountConfig[] {
  const account = (id: string, apiKey: string, settings: SettingsChange): SandboxAccountConfig => ({
    id,
    name: id,
    apiKeys: [apiKey],
    lists: [],
    settings,
  });
  return [
    account(SPLIT.id, SPLIT.apiKey, SPLIT.settings),
    ...PROFILE_NAMES.map((p) =>
      account(profileAccount(p).id, profileAccount(p).apiKey, { profile: p, faults: LATENCY }),
    ),
  ];
}

/** Listing at 20 requests/s, writing at 40, told to the worker as the Sandbox processor's list/write limits. */
export async function splitLimit(stack: Stack, contacts: number) {
  const run = await pipeline(
    stack,
    contacts,
    { rps: 1000, concurrency: 8 },
    { id: SPLIT.id, apiKey: SPLIT.apiKey },
    {
      ESPRESSO_SANDBOX_CLIENT_LIST_RPS: String(SPLIT.settings.limits.listing.requestsPerSecond),
      ESPRESSO_SANDBOX_CLIENT_WRITE_RPS: String(SPLIT.settings.limits.writing.requestsPerSecond),
    },
  );
  const boundSeconds = bound({ ...SPLIT.settings, faults: LATENCY }, run.needed);
  return {
    contacts,
    seconds: run.seconds,
    boundSeconds: round(boundSeconds),
    boundRatio: round(run.seconds / boundSeconds),
    firstWriteSeconds: run.firstWriteSeconds === undefined ? null : round(run.firstWriteSeconds),
    needed: run.needed,
    responses429: run.responses429,
  };
}

/** One pipeline run on an account with the profile's limits; the worker is told the same profile. */
export async function profileRun(stack: Stack, profile: ProfileName, contacts: number) {
  const client = clientLimitsOf(SANDBOX_PROFILES[profile]);
  const pacing = {
    rps: (client.rateLimit.requests * 1000) / client.rateLimit.perMs,
    concurrency: client.concurrency,
  };
  const run = await pipeline(stack, contacts, pacing, profileAccount(profile), {
    ESPRESSO_SANDBOX_CLIENT_PROFILE: profile,
  });
  const boundSeconds = bound({ ...SANDBOX_PROFILES[profile], faults: LATENCY }, run.needed);
  return {
    profile,
    contacts,
    seconds: run.seconds,
    boundSeconds: round(boundSeconds),
    boundRatio: round(run.seconds / boundSeconds),
    projected1MSeconds: Math.round((run.seconds * 1_000_000) / contacts),
    needed: run.needed,
    responses429: run.responses429,
  };
}

/**
 * The least time `needed` requests can take on an account: the slowest of its limits (requests over
 * rate, or requests times mean latency over concurrency, for the shared limit and each endpoint's own)
 * and of the listing's chain of pages: a full run lists the Sandbox by offset, PAGES_AT_ONCE pages
 * on their way at once, each taking the mean latency (one after another before 2026-12-05 11:00).
 */
export function bound(
  settings: Pick<AccountSettings, 'limits'> & { faults: { latencyMs: number } },
  needed: { listing: number; writing: number; other: number },
): number {
  const latency = settings.faults.latencyMs / 1000;
  const { limits } = settings;
  const all = needed.listing + needed.writing + needed.other;
  const seconds = (requests: number, limit: RequestLimit | undefined) =>
    !limit
      ? 0
      : Math.max(
          limit.requestsPerSecond > 0 ? requests / limit.requestsPerSecond : 0,
          limit.concurrency > 0 ? (requests * latency) / limit.concurrency : 0,
        );
  return Math.max(
    seconds(all, limits),
    seconds(needed.listing, limits.listing),
    seconds(needed.writing, limits.writing),
    (needed.listing * latency) / PAGES_AT_ONCE,
  );
}

function round(n: number): number {
  return Math.round(n * 100) / 100;
}
