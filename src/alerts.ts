import type { Logger } from './logger';

export interface Alert {
  configurationId: string;
  esp: string;
  status: 'needs_reauth' | 'active';
  message: string;
}

export type AlertSender = (alert: Alert) => Promise<void>;

/**
 * Alerts go to the log, and to ESPRESSO_ALERT_WEBHOOK_URL when set (JSON POST, three tries).
 * A webhook that keeps failing is logged, never retried by the caller: alerts must not block runs.
 */
export function createAlertSender(log: Logger, webhookUrl?: string): AlertSender {
  return async (alert) => {
    log.warn({ alert }, `ALERT ${alert.configurationId} (${alert.esp}): ${alert.message}`);
    if (!webhookUrl) return;
    for (let attempt = 1; attempt <= 3; attempt++) {
      try {
        const res = await fetch(webhookUrl, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ source: 'espresso', ...alert }),
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
