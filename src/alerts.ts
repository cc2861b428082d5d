import { randomUUID } from 'node:crypto';
import type { Logger } from './logger';
import type { Configuration, ConfigurationStore } from './storage';

export interface Alert {
  configurationId: string;
  esp: string;
  /**
   * needs_reauth: its credentials stopped working; active: they work again; run_failed: a run
   * failed, timed out or was cancelled; run_recovered: a run completed after that;
   * rejections_high: a run's rejected share passed the threshold; rejections_recovered: a later
   * run's was back under it.
   */
  status:
    'needs_reauth' | 'active' | 'run_failed' | 'run_recovered' | 'rejections_high' | 'rejections_recovered';
  message: string;
}

export type AlertSender = (alert: Alert) => Promise<void>;

const HEADLINE: Record<Alert['status'], string> = {
  needs_reauth: 'needs re-authorization',
  active: 'works again',
  run_failed: 'run failed',
  run_recovered: 'runs work again',
  rejections_high: 'rejects too many contacts',
  rejections_recovered: 'rejections back under the threshold',
};

/**
 * The webhook's JSON: `text` is what Slack-compatible incoming webhooks (Slack, Mattermost, Rocket.Chat)
 * post as the message; generic receivers read the fields beside it. A needs_reauth alert carries
 * the publisher's private page (`publisherUrl`), where they reconnect.
 */
export function webhookBody(alert: Alert, publisherUrl?: string) {
  const link = publisherUrl ? ` Publisher page (to reconnect): ${publisherUrl}` : '';
  return {
    text: `espresso: ${alert.configurationId} (${alert.esp}) ${HEADLINE[alert.status]}: ${alert.message}${link}`,
    source: 'espresso',
    ...alert,
    ...(publisherUrl ? { publisherUrl } : {}),
  };
}

/** The publisher page's link of a configuration (src/publisher-link.ts). */
export type PublisherLinkOf = (configurationId: string) => Promise<string>;

/**
 * Alerts go to the log, and to ESPRESSO_ALERT_WEBHOOK_URL when set (JSON POST, three tries).
 * A webhook that keeps failing is logged, never retried by the caller: alerts must not block runs.
 * The publisher link of a needs_reauth alert goes to the webhook only, never to the log: whoever
 * holds it sees the publisher's page. An alert whose link cannot be made is sent without it.
 */
export function createAlertSender(log: Logger, webhookUrl?: string, linkOf?: PublisherLinkOf): AlertSender {
  return async (alert) => {
    log.warn({ alert }, `ALERT ${alert.configurationId} (${alert.esp}): ${alert.message}`);
    if (!webhookUrl) return;
    let publisherUrl: string | undefined;
    if (alert.status === 'needs_reauth' && linkOf) {
      try {
        publisherUrl = await linkOf(alert.configurationId);
      } catch (err) {
        log.warn(
          { configurationId: alert.configurationId, err: (err as Error).message },
          'the alert goes without its publisher link',
        );
      }
    }
    for (let attempt = 1; attempt <= 3; attempt++) {
      try {
        const res = await fetch(webhookUrl, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(webhookBody(alert, publisherUrl)),
          signal: AbortSignal.timeout(5_000),
        });
        if (res.ok) return;
        log.warn({ status: res.status, attempt }, 'alert webhook refused the alert');
      } catch (err) {
        log.warn({ err: (err as Error).message, attempt }, 'alert webhook unreachable');
      }
      await new Promise((r) => setTimeout(r, 500 * attempt));
    }
  };
}

type Change = Partial<Omit<Configuration, 'id' | 'createdAt'>>;
type Decided = Pick<Alert, 'status' | 'message'>;

/**
 * Changes a configuration and, when `decide` says the change deserves an alert, saves the alert in
 * the same conditional write (the document's outbox) before sending it: a crash between the write
 * and the send leaves the alert in the outbox, and the next call (or the daily run's listing)
 * sends it. An alert is sent at least once, and only for the change that caused it.
 */
export async function changeWithAlert(
  configurations: ConfigurationStore,
  alerts: AlertSender,
  id: string,
  decide: (current: Configuration) => { change: Change; alert?: Decided | Decided[] },
): Promise<{ configuration: Configuration; alerted: boolean }> {
  let alerted = false;
  const configuration = await configurations.update(id, (current) => {
    const { change, alert } = decide(current);
    const decided = alert === undefined ? [] : Array.isArray(alert) ? alert : [alert];
    alerted = decided.length > 0;
    if (!alerted) return change;
    const outbox = [
      ...(current.alertOutbox ?? []),
      ...decided.map((a) => ({ id: randomUUID(), ...a })),
    ].slice(-20);
    return { ...change, alertOutbox: outbox };
  });
  return { configuration: await sendOutbox(configurations, alerts, configuration), alerted };
}

/** Sends a configuration's pending alerts, then removes exactly those from its outbox. */
export async function sendOutbox(
  configurations: ConfigurationStore,
  alerts: AlertSender,
  configuration: Configuration,
): Promise<Configuration> {
  const pending = configuration.alertOutbox ?? [];
  if (pending.length === 0) return configuration;
  for (const a of pending) {
    await alerts({
      configurationId: configuration.id,
      esp: configuration.esp,
      status: a.status,
      message: a.message,
    });
  }
  const sent = new Set(pending.map((a) => a.id));
  return configurations.update(configuration.id, (current) => {
    const rest = (current.alertOutbox ?? []).filter((a) => !sent.has(a.id));
    return { alertOutbox: rest.length ? rest : undefined };
  });
}
