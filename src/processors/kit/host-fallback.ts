// ESPs with regional data centers (SendGrid's EU subusers, Iterable's EU projects) refuse a key on
// the host of the other region. At connect time the default host is asked first; a key it refuses
// is tried on the other region's host, and the configuration keeps the host that accepted it.
import { InvalidCredentialsError } from '../errors';

/** The hosts of an ESP with regional data centers (defaults in the ESP's file). */
export interface RegionalHostOptions {
  /** The default (global or US) API host. */
  apiBaseUrl?: string;
  /** The EU API host, tried when the default host refuses a key. */
  euApiBaseUrl?: string;
}

/**
 * `attempt(primary)`, else on InvalidCredentialsError `attempt(fallback)`; `host` says which host
 * answered. When the fallback fails too, `bothFail` says which failure is thrown: `first`, the
 * primary's refusal (an ESP whose fallback host may be unreachable from where espresso runs), or
 * `fallback`, the fallback's own error (a 5xx there stays retryable).
 */
export async function withHostFallback<T>(
  hosts: { primary: string; fallback?: string; bothFail: 'first' | 'fallback' },
  attempt: (host: string) => Promise<T>,
): Promise<{ result: T; host: string }> {
  const { primary, fallback, bothFail } = hosts;
  try {
    return { result: await attempt(primary), host: primary };
  } catch (err) {
    if (!(err instanceof InvalidCredentialsError) || fallback === undefined || fallback === primary)
      throw err;
    try {
      return { result: await attempt(fallback), host: fallback };
    } catch (second) {
      throw bothFail === 'first' ? err : second;
    }
  }
}
