// The Sandbox ESP's in-memory world: accounts, lists, custom fields, contacts, OAuth grants, and a
// record of every value ever written. Contacts are implicit (index -> id and email), so a list of a
// million contacts costs only its field values.
import { createHash, randomBytes } from 'node:crypto';
import { readFile, rename, writeFile } from 'node:fs/promises';
import { defaultSettings, type AccountSettings } from './account-settings';

export interface FieldDef {
  key: string;
  label: string;
  type: 'text';
}

export class SandboxList {
  size = 0;
  readonly fields = new Map<string, FieldDef>();
  /** Current values, per field key, by contact index. */
  readonly values = new Map<string, (string | undefined)[]>();
  /** First value ever written per field key and contact; survives field deletion. */
  readonly firstWritten = new Map<string, (string | undefined)[]>();
  /** Contacts that were written a value different from their first one: every distinct value. */
  readonly conflicts = new Map<string, Map<number, string[]>>();
  /** Contacts the ESP refuses to update (like suppressed addresses): per-row errors. */
  readonly suppressed = new Set<number>();
  writes = 0;

  constructor(
    readonly id: string,
    readonly name: string,
  ) {}

  static contactId(index: number): string {
    return `ct_${String(index + 1).padStart(7, '0')}`;
  }

  static indexOf(contactId: string): number | undefined {
    const m = /^ct_(\d{7,})$/.exec(contactId);
    return m ? Number(m[1]) - 1 : undefined;
  }

  email(index: number): string {
    return `subscriber${index + 1}@${this.id.replace(/_/g, '-')}.example.com`;
  }

  has(index: number | undefined): index is number {
    return index !== undefined && index >= 0 && index < this.size;
  }

  write(field: string, index: number, value: string): void {
    this.writes++;
    this.column(this.values, field)[index] = value;
    const first = this.column(this.firstWritten, field);
    const earlier = first[index];
    if (earlier === undefined) first[index] = value;
    else if (earlier !== value) {
      const byIndex = this.conflicts.get(field) ?? this.conflicts.set(field, new Map()).get(field)!;
      const seen = byIndex.get(index) ?? [earlier];
      if (!seen.includes(value)) seen.push(value);
      byIndex.set(index, seen);
    }
  }

  /**
   * A field's values by contact index, one entry per contact of the list (undefined: none). Made
   * whole at once: filled as chunks write (several at a time, each its own range of the list), a
   * growing array went sparse and V8 copied it whole each time it made it dense again, up to 120
   * ms per batch update at 200,000 contacts, during which every request waited and then arrived at
   * the account's limits at once (docs/sandbox.md).
   */
  column(of: Map<string, (string | undefined)[]>, field: string): (string | undefined)[] {
    let values = of.get(field);
    if (!values) of.set(field, (values = new Array<string | undefined>(this.size).fill(undefined)));
    while (values.length < this.size) values.push(undefined);
    return values;
  }

  /** Every distinct value ever written to `field` for the contact, oldest first. */
  history(field: string, index: number): string[] {
    const conflicting = this.conflicts.get(field)?.get(index);
    if (conflicting) return conflicting;
    const first = this.firstWritten.get(field)?.[index];
    return first === undefined ? [] : [first];
  }
}

export class SandboxAccount {
  readonly lists = new Map<string, SandboxList>();
  settings: AccountSettings = defaultSettings();
  /** What the account's OAuth token endpoint answered: grants (codes and refreshes), refreshes, reuses of rotated refresh tokens. */
  oauth = { tokenGrants: 0, refreshes: 0, refreshTokenReuses: 0 };

  constructor(
    readonly id: string,
    readonly name: string,
    readonly apiKeys: string[],
  ) {}
}

interface RefreshToken {
  accountId: string;
  /** Every token issued from one consent shares it; a reuse revokes them all. */
  grant: string;
  /** Used once already: presenting it again is a reuse. */
  rotated?: boolean;
}

interface AuthorizationCode {
  accountId: string;
  clientId: string;
  redirectUri: string;
  /** The PKCE (S256) challenge the code was issued for: the token request must bring its verifier. */
  codeChallenge: string;
  expiresAt: number;
}

/** An OAuth client (an app), registered with the Sandbox as a developer registers one with a real ESP. */
export interface SandboxClient {
  id: string;
  secret: string;
  /** Where consent may send the browser back; any other redirect_uri is refused (exact match). */
  redirectUris: string[];
}

/** RFC 7636 4.1: 43 to 128 unreserved characters. */
const CODE_VERIFIER = /^[A-Za-z0-9._~-]{43,128}$/;

export class SandboxState {
  readonly accounts = new Map<string, SandboxAccount>();
  /** OAuth clients by id. Not in snapshots: the registration comes from configuration at each start. */
  readonly clients = new Map<string, SandboxClient>();
  private readonly codes = new Map<string, AuthorizationCode>();
  private readonly accessTokens = new Map<string, { accountId: string; expiresAt: number; grant: string }>();
  /** Rotated refresh tokens are kept (`rotated`), so that presenting one again is seen as a reuse. */
  private readonly refreshTokens = new Map<string, RefreshToken>();
  /** Token grants answered (code exchanges and refreshes), for tests of single-flight refresh. */
  tokenGrants = 0;

  constructor(private readonly now: () => number = Date.now) {}

  /** The demo world `npm start` shows: one account, two lists, a field-less start. */
  static demo(contacts = 0): SandboxState {
    const state = new SandboxState();
    const account = state.addAccount('acct_demo', 'Demo Coffee Roasters', ['sandbox-demo-key']);
    account.lists.set('list_newsletter', new SandboxList('list_newsletter', 'Morning Newsletter'));
    account.lists.set('list_offers', new SandboxList('list_offers', 'Offers & Events'));
    if (contacts > 0) state.seed('acct_demo', 'list_newsletter', contacts);
    return state;
  }

  addAccount(id: string, name: string, apiKeys: string[]): SandboxAccount {
    if (this.accounts.has(id)) throw new Error(`account ${id} exists`);
    const account = new SandboxAccount(id, name, apiKeys);
    this.accounts.set(id, account);
    return account;
  }

  seed(accountId: string, listId: string, contacts: number): SandboxList {
    const account = this.accounts.get(accountId);
    if (!account) throw new Error(`no account ${accountId}`);
    let list = account.lists.get(listId);
    if (!list) account.lists.set(listId, (list = new SandboxList(listId, listId)));
    list.size += contacts;
    return list;
  }

  // ---- authentication ----

  accountForApiKey(key: string): SandboxAccount | undefined {
    for (const account of this.accounts.values()) if (account.apiKeys.includes(key)) return account;
    return undefined;
  }

  accountForAccessToken(token: string): SandboxAccount | 'expired' | undefined {
    const grant = this.accessTokens.get(token);
    if (!grant) return undefined;
    if (grant.expiresAt <= this.now()) return 'expired';
    return this.accounts.get(grant.accountId);
  }

  issueCode(code: Omit<AuthorizationCode, 'expiresAt'>): string {
    const value = randomBytes(16).toString('base64url');
    this.codes.set(value, { ...code, expiresAt: this.now() + 60_000 });
    return value;
  }

  /**
   * Authorization-code grant. Codes are single-use and need the PKCE (S256) verifier of their
   * challenge, the redirect URI they were issued for, and that URI still registered for the client.
   */
  exchangeCode(code: string, clientId: string, redirectUri: string, verifier = '') {
    const grant = this.codes.get(code);
    this.codes.delete(code);
    if (
      !grant ||
      grant.expiresAt <= this.now() ||
      grant.clientId !== clientId ||
      grant.redirectUri !== redirectUri ||
      !this.clients.get(clientId)?.redirectUris.includes(redirectUri) ||
      !CODE_VERIFIER.test(verifier) ||
      createHash('sha256').update(verifier).digest('base64url') !== grant.codeChallenge
    ) {
      return undefined;
    }
    return this.issueTokens(grant.accountId, randomBytes(9).toString('base64url'));
  }

  /**
   * Refresh-token grant. Refresh tokens rotate: the one used stops working, and presenting it again
   * revokes the whole grant (with reuse detection on).
   */
  refresh(refreshToken: string) {
    const presented = this.refreshTokens.get(refreshToken);
    const account = presented && this.accounts.get(presented.accountId);
    if (!presented || !account) return undefined;
    if (presented.rotated) {
      account.oauth.refreshTokenReuses++;
      if (account.settings.refreshTokenReuseDetection) this.revoke((g) => g.grant === presented.grant);
      return undefined;
    }
    presented.rotated = true;
    account.oauth.refreshes++;
    return this.issueTokens(presented.accountId, presented.grant);
  }

  private issueTokens(accountId: string, grant: string) {
    this.tokenGrants++;
    const account = this.accounts.get(accountId)!;
    account.oauth.tokenGrants++;
    const accessToken = `sbx_at_${randomBytes(18).toString('base64url')}`;
    const refreshToken = `sbx_rt_${randomBytes(18).toString('base64url')}`;
    const lifetime = account.settings.tokenLifetimeSeconds;
    this.accessTokens.set(accessToken, { accountId, expiresAt: this.now() + lifetime * 1000, grant });
    this.refreshTokens.set(refreshToken, { accountId, grant });
    return {
      access_token: accessToken,
      refresh_token: refreshToken,
      token_type: 'bearer',
      expires_in: lifetime,
    };
  }

  /** Makes every access token of the account expire now (tests of refresh). */
  expireAccessTokens(accountId: string): void {
    for (const grant of this.accessTokens.values()) if (grant.accountId === accountId) grant.expiresAt = 0;
  }

  /** Revokes every grant of the account: refreshes then fail with invalid_grant. */
  revokeGrants(accountId: string): void {
    this.revoke((g) => g.accountId === accountId);
  }

  private revoke(which: (grant: { accountId: string; grant: string }) => boolean): void {
    for (const [token, g] of this.accessTokens) if (which(g)) this.accessTokens.delete(token);
    for (const [token, g] of this.refreshTokens) if (which(g)) this.refreshTokens.delete(token);
  }

  // ---- snapshot ----

  async save(file: string): Promise<void> {
    const sparse = (values: (string | undefined)[]) =>
      values.flatMap((v, i) => (v === undefined ? [] : [[i, v] as [number, string]]));
    const data = {
      version: 1,
      accounts: [...this.accounts.values()].map((a) => ({
        id: a.id,
        name: a.name,
        apiKeys: a.apiKeys,
        settings: a.settings,
        oauth: a.oauth,
        lists: [...a.lists.values()].map((l) => ({
          id: l.id,
          name: l.name,
          size: l.size,
          writes: l.writes,
          fields: [...l.fields.values()],
          values: Object.fromEntries([...l.values].map(([k, v]) => [k, sparse(v)])),
          firstWritten: Object.fromEntries([...l.firstWritten].map(([k, v]) => [k, sparse(v)])),
          conflicts: Object.fromEntries([...l.conflicts].map(([k, m]) => [k, [...m]])),
        })),
      })),
      accessTokens: [...this.accessTokens],
      refreshTokens: [...this.refreshTokens],
    };
    await writeFile(`${file}.tmp`, JSON.stringify(data));
    await rename(`${file}.tmp`, file);
  }

  static async load(file: string): Promise<SandboxState> {
    const data = JSON.parse(await readFile(file, 'utf8'));
    if (data.version !== 1) throw new Error(`${file}: unknown sandbox snapshot version ${data.version}`);
    const state = new SandboxState();
    for (const a of data.accounts) {
      const account = state.addAccount(a.id, a.name, a.apiKeys);
      const defaults = defaultSettings();
      account.settings = { ...defaults, ...a.settings, faults: { ...defaults.faults, ...a.settings.faults } };
      if (a.oauth) account.oauth = a.oauth;
      for (const l of a.lists) {
        const list = new SandboxList(l.id, l.name);
        list.size = l.size;
        list.writes = l.writes;
        for (const f of l.fields) list.fields.set(f.key, f);
        const fill = (of: Map<string, (string | undefined)[]>, saved: Record<string, [number, string][]>) => {
          for (const [k, pairs] of Object.entries(saved)) {
            const values = list.column(of, k);
            for (const [i, v] of pairs) values[i] = v;
          }
        };
        fill(list.values, l.values);
        fill(list.firstWritten, l.firstWritten);
        for (const [k, entries] of Object.entries(l.conflicts as Record<string, [number, string[]][]>)) {
          list.conflicts.set(k, new Map(entries));
        }
        account.lists.set(list.id, list);
      }
    }
    // Snapshots older than grant families: each token is a grant of its own.
    for (const [t, g] of data.accessTokens) state.accessTokens.set(t, { grant: t, ...g });
    for (const [t, r] of data.refreshTokens)
      state.refreshTokens.set(t, typeof r === 'string' ? { accountId: r, grant: t } : r);
    return state;
  }
}
