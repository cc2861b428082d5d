import { defineSignal } from '@temporalio/workflow';

export interface DispatchTotals {
  chunksDone: number;
  updated: number;
  rejected: number;
  rejectedByKind: Record<string, number>;
  /** Of updated: values written over one espresso would not write. */
  replaced?: number;
}

/** Dispatch -> its parent configuration sync: running totals (counts only). Legacy runs only. */
export const dispatchProgressSignal = defineSignal<[DispatchTotals]>('dispatchProgress');

/** How one configuration's run ended, as the daily run counts it. Ids and counts only. */
export interface ConfigurationOutcome {
  configurationId: string;
  esp?: string;
  outcome:
    | 'completed'
    | 'needs_reauth'
    | 'skipped'
    | 'busy'
    | 'failed'
    | 'timed_out'
    | 'cancelled'
    | 'already_ran'
    | 'unreadable';
  updated?: number;
  rejected?: number;
  /** Why, for every outcome but completed (no secrets, no emails: reasons are sanitized). */
  reason?: string;
}
