import type { Configuration } from '../storage';

/** What an ESP is and how hard it may be driven. Each processor declares one. */
export interface ProcessorDescriptor {
  id: string;
  displayName: string;
  /** How publishers connect: OAuth, an API key, or either. At least one. */
  oauth2?: OAuthDescriptor;
  apiKey?: ApiKeyDescriptor;
  /** Most contacts one update request may carry. */
  maxBatchSize: number;
  /**
   * Contacts per listing page, for processors that list in pages of a known size: with the batch
   * size it says what part of a run's requests the listing sends (src/activities/share-sizes.ts).
   */
  listPageSize?: number;
  /** Most requests in flight at once per ESP account. */
  concurrency: number;
  /** Steady request rate per ESP account: `requests` every `perMs` milliseconds. */
  rateLimit: { requests: number; perMs: number };
  /**
   * Endpoints the ESP limits on their own, per account, by name (a request names its limit); each
   * counts against rateLimit too. `for` says which side of a run sends them: `listing` (maintenance
   * and the export) or `writing` (chunk updates); when a run does both at once, each side has the
   * whole of its own limits (src/activities/account-share.ts). Without `for`, both sides may.
   */
  limits?: Record<string, NamedLimit>;
  /** How a newsletter link refers to the field in this ESP's templates (the merge tag). */
  mergeTag: (fieldName: string) => string;
  /** The ESP's rules for the custom field's name. */
  field: { maxLength: number; case: 'upper' | 'lower' | 'preserve'; allowed: RegExp };
}

/** A named limit: `requests` every `perMs` milliseconds, for one side of a run or both. */
export interface NamedLimit {
  requests: number;
  perMs: number;
  for?: 'listing' | 'writing';
}

export interface OAuthDescriptor {
  authorizeUrl: string;
  tokenUrl: string;
  scopes: string[];
  pkce: boolean;
  clientId: string;
  clientSecret: string;
  /** Refresh this long before the access token expires. */
  refreshMarginMs: number;
}

export interface ApiKeyDescriptor {
  /** What the ESP calls the key, for forms and errors. */
  label: string;
}

/** Stored in the SecretStore as JSON under the configuration's credentialsSecretId. */
export type Credentials =
  | { kind: 'apiKey'; apiKey: string }
  | {
      kind: 'oauth2';
      accessToken: string;
      refreshToken?: string;
      /** Epoch ms. */
      expiresAt?: number;
      /** Epoch ms: when the tokens were issued (refresh starts at half their lifetime at the latest). */
      issuedAt?: number;
    };

export interface AccountInfo {
  accountId: string;
  accountLabel: string;
  /** The ESP's lists/audiences, when the ESP has several. */
  lists: Array<{ id: string; name: string }>;
  /** Where this account's API lives when not at the default URL (data center, region); saved with the configuration. */
  apiBaseUrl?: string;
}

export interface ContactRef {
  contactId: string;
  /** The field's value when the contact already has one (full listings): it is kept, never replaced. */
  currentValue?: string;
}

export interface ContactPage {
  contacts: ContactRef[];
  /** Absent on the last page. */
  nextCursor?: string;
  /**
   * How many contacts the list held when the page was answered, where the ESP says so with each
   * page (Mailchimp's total_items, Brevo's count, the Sandbox's total): the export asks no page
   * past it ahead of time (pageAfter).
   */
  total?: number;
}

export type ListMode = 'incremental' | 'full';

export interface ContactUpdate {
  contactId: string;
  value: string;
}

export type ContactResult =
  { contactId: string; status: 'updated' } | { contactId: string; status: 'rejected'; reason: string };

export interface MaintenanceReport {
  credentials: 'valid' | 'refreshed';
  /** would_create: a dry run found the field missing and did not create it. */
  field: 'exists' | 'created' | 'would_create';
  fieldName: string;
}

/** The part of a configuration a processor needs: which account, list and field. */
export type ProcessorTarget = Pick<
  Configuration,
  'id' | 'esp' | 'espAccountId' | 'espListId' | 'fieldName' | 'credentialsSecretId'
> & { apiBaseUrl?: string };
