// Connecting an ESP account: the one path the web flow and `espresso connect` share. Credentials
// are validated by the processor before this runs; here they are stored and the configuration is
// created, or updated in place when the same account and list (or a re-authorized one) exist.
import { toTarget, type ActivityDeps } from '../activities/deps';
import { InvalidCredentialsError } from '../processors/errors';
import { RefreshLeases } from '../processors/refresh-leases';
import { changeWithAlert } from '../alerts';
import type { AccountInfo, Credentials } from '../processors/types';
import { ConflictError, credentialsSecretId, newConfigurationId, type Configuration } from '../storage';

export class ConnectError extends Error {
  override name = 'ConnectError';
  constructor(
    readonly code: 'choose_list' | 'unknown_list' | 'account_mismatch' | 'still_refused',
    message: string,
  ) {
    super(message);
  }
}

/** The reason a publisher's own disconnect leaves: connecting the account again resumes it. */
export const DISCONNECTED_BY_PUBLISHER = 'disconnected by the publisher';

/** Disabled by an operator (admin page, CLI), not by its publisher's disconnect. */
export const disabledByOperator = (c: Configuration) =>
  c.status === 'disabled' && c.statusReason !== DISCONNECTED_BY_PUBLISHER;

export interface SaveConnectionInput {
  esp: string;
  credentials: Credentials;
  account: AccountInfo;
  /** The ESP list/audience; may be omitted when the account has one list or none. */
  listId?: string;
  /** Re-authorization of this configuration: its credentials are replaced in place. */
  reauthorizeId?: string;
}

export function pickList(account: AccountInfo, listId?: string): string | undefined {
  if (listId) {
    if (!account.lists.some((l) => l.id === listId)) {
      throw new ConnectError(
        'unknown_list',
        `list ${listId} is not in this account; choose one of: ${account.lists.map((l) => l.id).join(', ') || '(none)'}`,
      );
    }
    return listId;
  }
  if (account.lists.length <= 1) return account.lists[0]?.id;
  throw new ConnectError(
    'choose_list',
    `this account has ${account.lists.length} lists; choose one of: ${account.lists.map((l) => `${l.id} (${l.name})`).join(', ')}`,
  );
}

export async function saveConnection(
  deps: Pick<ActivityDeps, 'stores' | 'processors'> & Partial<Pick<ActivityDeps, 'alerts'>>,
  input: SaveConnectionInput,
): Promise<{ configuration: Configuration; created: boolean }> {
  const { configurations, secrets } = deps.stores;
  const processor = deps.processors.get(input.esp);
  const espListId = pickList(input.account, input.listId);

  let existing: Configuration | undefined;
  if (input.reauthorizeId) {
    existing = await configurations.get(input.reauthorizeId);
    if (existing.esp !== input.esp || existing.espAccountId !== input.account.accountId) {
      throw new ConnectError(
        'account_mismatch',
        'these credentials are for another account than the configuration being re-authorized',
      );
    }
  } else {
    // Found by the ESP that validated the credentials and that ESP's own account and list ids.
    existing = await configurations.findByAccount(input.esp, input.account.accountId, espListId);
  }

  if (existing) {
    // After any refresh of the old grant under way (another process's): its tokens never land
    // over these.
    const saving = existing.credentialsSecretId;
    await new RefreshLeases(deps.stores.blobs).withLease(saving, () =>
      secrets.put(saving, JSON.stringify(input.credentials)),
    );
    // A configuration an operator disabled stays disabled: new credentials do not overrule them.
    const decide = (c: Configuration) => ({
      change: {
        status: disabledByOperator(c) ? ('disabled' as const) : ('active' as const),
        statusReason: disabledByOperator(c) ? c.statusReason : undefined,
        accountLabel: input.account.accountLabel.slice(0, 200) || c.accountLabel,
        apiBaseUrl: input.account.apiBaseUrl,
      },
      // The one recovery alert that answers the needs_reauth alert.
      alert:
        c.status === 'needs_reauth'
          ? { status: 'active' as const, message: 'credentials re-authorized; daily runs resume' }
          : undefined,
    });
    const configuration = deps.alerts
      ? (await changeWithAlert(configurations, deps.alerts, existing.id, decide)).configuration
      : await configurations.update(existing.id, (c) => decide(c).change);
    return { configuration, created: false };
  }

  // Credentials first: a configuration is never visible to a run without them.
  const id = newConfigurationId();
  await secrets.put(credentialsSecretId(id), JSON.stringify(input.credentials));
  try {
    const configuration = await configurations.create(
      {
        esp: input.esp,
        accountLabel: input.account.accountLabel.slice(0, 200) || input.account.accountId,
        espAccountId: input.account.accountId,
        espListId,
        ...(input.account.apiBaseUrl ? { apiBaseUrl: input.account.apiBaseUrl } : {}),
        fieldName: processor.fieldName(),
        status: 'active',
        maintenance: true,
      },
      { id },
    );
    return { configuration, created: true };
  } catch (err) {
    // A connect of the same account and list won the race: this one updates that configuration.
    await secrets.delete(credentialsSecretId(id));
    if (!(err instanceof ConflictError)) throw err;
    return saveConnection(deps, input);
  }
}

/**
 * An operator's disable or enable (CLI and admin page). Disabling stops daily runs, and a running
 * run at its next chunk. Enabling a configuration in needs_reauth first asks its ESP whether the
 * stored credentials work again: if they do, it is active and the one recovery alert answers the
 * needs_reauth alert; if not, it stays in needs_reauth (ConnectError `still_refused`).
 */
export async function setEnabled(
  deps: Pick<ActivityDeps, 'stores' | 'processors' | 'alerts'>,
  id: string,
  enabled: boolean,
): Promise<Configuration> {
  const { configurations } = deps.stores;
  if (!enabled) return configurations.update(id, () => ({ status: 'disabled', statusReason: undefined }));
  const current = await configurations.get(id);
  if (current.status !== 'needs_reauth')
    return configurations.update(id, () => ({ status: 'active', statusReason: undefined }));
  const processor = deps.processors.get(current.esp);
  try {
    await processor.verifyCredentials(toTarget(current));
  } catch (err) {
    if (!(err instanceof InvalidCredentialsError)) throw err;
    throw new ConnectError(
      'still_refused',
      `${processor.descriptor.displayName} still refuses the stored credentials of ${id}: re-authorize it with the link on the admin page`,
    );
  }
  const { configuration } = await changeWithAlert(configurations, deps.alerts, id, (c) => ({
    change: { status: 'active', statusReason: undefined },
    alert:
      c.status === 'needs_reauth'
        ? { status: 'active', message: 'credentials work again; daily runs resume' }
        : undefined,
  }));
  return configuration;
}
