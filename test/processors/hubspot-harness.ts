import { HubSpotProcessor } from '../../src/processors/hubspot';
import type { ProcessorTarget } from '../../src/processors/types';
import { LocalSecretStore } from '../../src/storage/local-secret-store';
import { FakeHubSpot, type Portal } from '../fakes/hubspot-server';
import { tempDir } from '../support/tmp';
import { savedTarget, type ProcessorHarness } from './harness';

/** The processor against a fake HubSpot; every target is its own HubSpot account (portal). */
export async function hubspotHarness(): Promise<
  ProcessorHarness & { fake: FakeHubSpot; portalOf(target: ProcessorTarget): Portal }
> {
  const fake = new FakeHubSpot();
  await fake.start();
  const dir = await tempDir();
  const secrets = new LocalSecretStore(`${dir}/secrets`, { keyFile: `${dir}/key` });
  const processor = new HubSpotProcessor(
    { secrets },
    {
      oauth: { clientId: fake.client.id, clientSecret: fake.client.secret },
      apiBaseUrl: fake.url,
      authBaseUrl: fake.url,
    },
  );
  const portalOf = (target: ProcessorTarget) => fake.portals.get(Number(target.espAccountId))!;

  const newTarget = async (accountId: string, credentials: unknown): Promise<ProcessorTarget> => {
    return savedTarget(secrets, credentials, {
      esp: 'hubspot',
      espAccountId: accountId,
      fieldName: processor.fieldName(),
    });
  };

  return {
    fake,
    portalOf,
    processor,
    secrets,
    invalidApiKey: 'pat-na1-PLANTED-0000-wrong-key',
    rotatesRefreshTokens: false,
    async connectWithApiKey() {
      const portal = fake.addPortal();
      const { credentials, account } = await processor.connectWithApiKey(portal.privateAppToken);
      return newTarget(account.accountId, credentials);
    },
    async connectWithOAuth() {
      fake.consentPortal = fake.addPortal();
      const redirectUri = 'http://127.0.0.1:9/auth/hubspot/callback';
      const { url } = processor.authorizationRequest(redirectUri, 'state-1');
      const consent = await fetch(url, { redirect: 'manual' });
      if (consent.status !== 302) throw new Error(`consent answered ${consent.status}`);
      const code = new URL(consent.headers.get('location')!).searchParams.get('code')!;
      const { credentials, account } = await processor.completeAuthorization(code, redirectUri);
      return newTarget(account.accountId, credentials);
    },
    async seed(target, contacts) {
      return portalOf(target).seed(contacts);
    },
    async deleteField(target) {
      const portal = portalOf(target);
      portal.properties.delete(target.fieldName);
      for (const c of portal.contacts) c.props.delete(target.fieldName);
    },
    async fieldExists(target) {
      return portalOf(target).properties.has(target.fieldName);
    },
    async valueOf(target, contactId) {
      return portalOf(target).contact(contactId)?.props.get(target.fieldName);
    },
    async rejectRows(target, contactIds) {
      for (const id of contactIds) portalOf(target).rejected.add(id);
    },
    async rateLimit(target, on) {
      portalOf(target).rateLimited = on ? 'TEN_SECONDLY_ROLLING' : undefined;
      // TEN_SECONDLY_ROLLING: the whole ten-second window.
      return { retryAfterMs: 10_000 };
    },
    async expireAccessTokens(target) {
      fake.expireAccessTokens(portalOf(target));
    },
    async revokeGrants(target) {
      fake.revokeGrants(portalOf(target));
    },
    tokenGrants: () => fake.tokenGrants,
    stop: () => fake.stop(),
  };
}
