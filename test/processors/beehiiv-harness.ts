import { BeehiivProcessor, type BeehiivOptions } from '../../src/processors/beehiiv';
import type { AccountLimits } from '../../src/processors/pacing';
import type { ProcessorTarget } from '../../src/processors/types';
import { LocalSecretStore } from '../../src/storage/local-secret-store';
import { BeehiivFake, type FakePublication } from '../fakes/beehiiv-server';
import { tempDir } from '../support/tmp';
import { savedTarget, type ProcessorHarness } from './harness';

/** How much faster than espresso's real pace the harness's processor goes. */
export const SPEEDUP = 50;

/**
 * beehiiv at 50 times its real rate (2 requests a second would make the contract's listings take
 * minutes), on organizations whose limit the fake scales alike. `pacedProcessor` keeps the real pace.
 */
class FastBeehiivProcessor extends BeehiivProcessor {
  override limits(): AccountLimits {
    const limits = super.limits();
    return { ...limits, rate: { ...limits.rate, requests: limits.rate.requests * SPEEDUP } };
  }
}

/** Every target is the only publication of a fresh organization, connected with a workspace key. */
export async function beehiivHarness(options: BeehiivOptions = {}): Promise<
  ProcessorHarness & {
    fake: BeehiivFake;
    publicationOf(target: ProcessorTarget): FakePublication;
    pacedProcessor: BeehiivProcessor;
    /** A target for `publication`, connected with `apiKey`. */
    connect(apiKey: string, publication: FakePublication): Promise<ProcessorTarget>;
  }
> {
  const fake = await new BeehiivFake().start();
  const dir = await tempDir();
  const secrets = new LocalSecretStore(`${dir}/secrets`, { keyFile: `${dir}/key` });
  const settings: BeehiivOptions = {
    apiBaseUrl: fake.url,
    authBaseUrl: fake.origin,
    oauth: { clientId: fake.oauth.client.id, clientSecret: fake.oauth.client.secret },
    jobPollMs: 5,
    ...options,
  };
  const processor = new FastBeehiivProcessor({ secrets }, settings);
  const pacedProcessor = new BeehiivProcessor({ secrets }, settings);
  const publications = new Map<string, FakePublication>();
  const publicationOf = (target: ProcessorTarget) => publications.get(target.id)!;

  const connect = async (apiKey: string, publication: FakePublication): Promise<ProcessorTarget> =>
    newTarget(await processor.connectWithApiKey(apiKey), publication);
  const newTarget = async (
    { credentials, account }: Awaited<ReturnType<BeehiivProcessor['connectWithApiKey']>>,
    publication: FakePublication,
  ): Promise<ProcessorTarget> => {
    const target = await savedTarget(secrets, credentials, {
      esp: 'beehiiv',
      espAccountId: account.accountId,
      espListId: publication.id,
      fieldName: processor.fieldName(),
    });
    publications.set(target.id, publication);
    return target;
  };

  return {
    fake,
    processor,
    pacedProcessor,
    secrets,
    publicationOf,
    connect,
    invalidApiKey: 'bh_PLANTED_wrong_key_0123456789',
    async connectWithApiKey() {
      const {
        organization,
        apiKey,
        publications: [publication],
      } = fake.addOrganization(1);
      organization.perMinute *= SPEEDUP;
      return connect(apiKey, publication!);
    },
    async connectWithOAuth() {
      const {
        organization,
        publications: [publication],
      } = fake.addOrganization(1);
      organization.perMinute *= SPEEDUP;
      fake.consentOrganization = organization;
      const redirectUri = 'http://127.0.0.1:9/auth/beehiiv/callback';
      const { url, codeVerifier } = processor.authorizationRequest(redirectUri, 'state-1');
      const consent = await fetch(url, { redirect: 'manual' });
      fake.consentOrganization = undefined;
      if (consent.status !== 302) throw new Error(`consent answered ${consent.status}`);
      const code = new URL(consent.headers.get('location')!).searchParams.get('code')!;
      return newTarget(await processor.completeAuthorization(code, redirectUri, codeVerifier), publication!);
    },
    async expireAccessTokens(target) {
      fake.oauth.expireAccessTokens(publicationOf(target).organization);
    },
    async revokeGrants(target) {
      fake.oauth.revokeGrants(publicationOf(target).organization);
    },
    tokenGrants: () => fake.oauth.grants,
    async seed(target, contacts) {
      return publicationOf(target).seed(contacts);
    },
    async deleteField(target) {
      publicationOf(target).deleteField(target.fieldName);
    },
    async fieldExists(target) {
      return publicationOf(target).customFields.has(target.fieldName);
    },
    async valueOf(target, contactId) {
      return publicationOf(target).find(contactId)?.fields.get(target.fieldName);
    },
    async rejectRows(target, contactIds) {
      for (const id of contactIds) publicationOf(target).refused.add(id);
    },
    async rateLimit(target, on) {
      const organization = publicationOf(target).organization;
      // beehiiv sends no Retry-After: RateLimit-Reset says when (epoch seconds) the window resets.
      const until = Math.ceil(Date.now() / 1000) + 30;
      organization.rateLimitedUntil = on ? until : undefined;
      return { retryAfterMs: until * 1000 - Date.now(), toleranceMs: 5_000 };
    },
    stop: () => fake.stop(),
  };
}
