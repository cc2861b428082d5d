// The end of a connection, shared by the OAuth callback, the API key form and the list choice:
// the list (asked for when the account has several), the saved configuration, its first run.
import type { Request, Response } from 'express';
import { recordAudit } from '../audit/log';
import { ConnectError, pickList, saveConnection } from '../connect';
import type { Logger } from '../logger';
import type { BaseProcessor } from '../processors/base-processor';
import { UnknownEspError } from '../processors/registry';
import type { AccountInfo, Credentials } from '../processors/types';
import { NotFoundError } from '../storage';
import { RunInProgressError, startConfigurationRun, today } from '../temporal/runs';
import type { WebDeps } from './deps';
import { otherEspConfiguration, unknownConfiguration, unknownEsp } from './connect-failures';
import { escapeHtml, hidden, page } from './pages';
import { hashBinding, type PendingFlows } from './pending';
import { publisherUrl } from '../publisher-link';
import { csrfToken, flowBinding, newNonce, type Signer } from './security';
import { temporalClient } from './temporal-client';

/** What every connect handler works with. */
export interface ConnectFlow {
  deps: WebDeps;
  signer: Signer;
  log: Logger;
  pending: PendingFlows;
  /** Cookies are Secure when the public URL is https. */
  secure: boolean;
}

/** The route's ESP; answers 404 itself when there is no such ESP. */
export function processorFor(flow: ConnectFlow, req: Request, res: Response): BaseProcessor | undefined {
  try {
    return flow.deps.processors.get(String(req.params.esp));
  } catch (err) {
    if (!(err instanceof UnknownEspError)) throw err;
    unknownEsp(res);
    return undefined;
  }
}

/**
 * A re-authorization link names a configuration: it must exist and belong to this route's ESP,
 * checked before anything is asked of the ESP. Answers the refusal itself when it does not.
 */
export async function reauthorizable(
  flow: ConnectFlow,
  res: Response,
  processor: BaseProcessor,
  reauthorizeId: string | undefined,
): Promise<boolean> {
  if (!reauthorizeId) return true;
  try {
    const configuration = await flow.deps.stores.configurations.get(reauthorizeId);
    if (configuration.esp === processor.descriptor.id) return true;
    otherEspConfiguration(res, processor);
  } catch (err) {
    if (!(err instanceof NotFoundError)) throw err;
    unknownConfiguration(res, processor.descriptor.id);
  }
  return false;
}

/** Validated credentials: pick the list if the account has several, else save. */
export async function complete(
  flow: ConnectFlow,
  req: Request,
  res: Response,
  processor: BaseProcessor,
  credentials: Credentials,
  account: AccountInfo,
  reauthorizeId?: string,
): Promise<void> {
  let listId: string | undefined;
  if (reauthorizeId) {
    listId = (await flow.deps.stores.configurations.get(reauthorizeId)).espListId;
  } else {
    try {
      listId = pickList(account);
    } catch (err) {
      if (!(err instanceof ConnectError) || err.code !== 'choose_list') throw err;
      return chooseList(flow, req, res, processor, credentials, account);
    }
  }
  await save(flow, req, res, processor, credentials, account, listId, reauthorizeId);
}

/** The list choice page; the credentials wait in a pending flow until the choice is posted. */
async function chooseList(
  flow: ConnectFlow,
  req: Request,
  res: Response,
  processor: BaseProcessor,
  credentials: Credentials,
  account: AccountInfo,
): Promise<void> {
  const { signer, secure } = flow;
  const esp = processor.descriptor.id;
  const binding = flowBinding(req, res, signer, secure);
  const nonce = newNonce();
  await flow.pending.put(
    nonce,
    { esp, binding: hashBinding(binding), stage: 'choose_list', account, createdAt: Date.now() },
    { credentials },
  );
  const options = account.lists
    .map(
      (l, i) =>
        `<p><label><input type="radio" name="listId" value="${escapeHtml(l.id)}" ${i === 0 ? 'checked' : ''}> ${escapeHtml(l.name)} <span class="muted">(${escapeHtml(l.id)})</span></label></p>`,
    )
    .join('');
  res.send(
    page(
      'Choose a list',
      `<h1>Which list should espresso keep filled?</h1>
<p>${escapeHtml(account.accountLabel)} has ${account.lists.length} lists. Choose the one your newsletter goes to.</p>
<form method="post" action="/auth/${escapeHtml(esp)}/list">
  ${hidden('_csrf', csrfToken(req, res, signer, secure))}
  ${hidden('nonce', nonce)}
  ${options}
  <p><button type="submit">Connect this list</button></p>
</form>`,
    ),
  );
}

type FirstRun = 'started' | 'running' | 'later' | 'disabled';

/** Saves the configuration, records who connected it, starts its first run and shows the merge tag. */
export async function save(
  flow: ConnectFlow,
  req: Request,
  res: Response,
  processor: BaseProcessor,
  credentials: Credentials,
  account: AccountInfo,
  listId: string | undefined,
  reauthorizeId?: string,
): Promise<void> {
  const { deps } = flow;
  const esp = processor.descriptor.id;
  const { configuration, created } = await saveConnection(deps, {
    esp,
    credentials,
    account,
    listId,
    reauthorizeId,
  });
  await recordAudit(deps.stores.blobs, {
    actor: `publisher ${esp} account ${account.accountId}`,
    action: reauthorizeId ? 'reauthorize' : 'connect',
    configurationId: configuration.id,
    ...(created ? { detail: 'new configuration' } : {}),
    address: req.ip ?? '',
  });
  const firstRun =
    configuration.status === 'disabled' ? 'disabled' : await startFirstRun(flow, configuration.id);
  const link = await publisherUrl(deps.stores, deps.web.publicUrl, configuration.id);
  const list = account.lists.find((l) => l.id === configuration.espListId);
  const tag = `lctg=${processor.descriptor.mergeTag(configuration.fieldName)}`;
  const field = `<code>${escapeHtml(configuration.fieldName)}</code>`;
  res.send(
    page(
      'Connected',
      `<h1>${created ? 'Connected' : 'Re-connected'}: ${escapeHtml(configuration.accountLabel)}${list ? ` · ${escapeHtml(list.name)}` : ''}</h1>
<p>${firstRunSentence(firstRun, field)}
Every day after that, espresso checks the connection, re-creates the field if it was deleted, and fills it for new contacts.</p>
<h2>Put this into your newsletter links</h2>
<p><span class="tag" id="merge-tag">${escapeHtml(tag)}</span></p>
<p class="muted">For example <code>https://example.com/article?${escapeHtml(tag)}</code>. ${escapeHtml(processor.descriptor.displayName)} replaces the tag with each subscriber's value when it sends.</p>
<h2>Your page</h2>
<p>Come back any time to see the daily runs, reconnect or disconnect: <a id="publisher-link" href="${escapeHtml(link)}">${escapeHtml(link)}</a>. Keep this link private: anyone with it sees the page.</p>
<p class="muted">Configuration <code id="configuration-id">${escapeHtml(configuration.id)}</code></p>`,
      { kind: 'ok' },
    ),
  );
}

/**
 * The first run fills the field now; a run already writing it (a re-authorization during a run)
 * is left to finish, and the next daily run picks up what it did not reach.
 */
async function startFirstRun(flow: ConnectFlow, configurationId: string): Promise<FirstRun> {
  try {
    const client = await temporalClient(flow.deps);
    await startConfigurationRun(
      client,
      flow.deps.stores,
      { configurationId, runDate: today(), mode: 'full' },
      'first-run',
    );
    return 'started';
  } catch (err) {
    if (err instanceof RunInProgressError) return 'running';
    flow.log.error({ configurationId, err: (err as Error).message }, 'could not start the first run');
    return 'later';
  }
}

/** What happens to the field now; `field` is the field's name as HTML. */
function firstRunSentence(firstRun: FirstRun, field: string): string {
  switch (firstRun) {
    case 'started':
      return `espresso is now giving every contact in this list a value in the ${field} field. This first run takes from seconds to a few minutes, depending on the size of the list.`;
    case 'running':
      return `A run is filling the ${field} field of this list right now; it goes on with the new connection.`;
    case 'disabled':
      return `The new connection is saved, but this configuration was disabled by an operator, so it stays disabled: espresso does not fill the ${field} field until an operator enables it again.`;
    case 'later':
      return `The connection is saved. The first fill of the ${field} field starts with the next daily run.`;
  }
}
