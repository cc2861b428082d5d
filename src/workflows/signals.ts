import { defineSignal } from '@temporalio/workflow';

export interface DispatchTotals {
  chunksDone: number;
  updated: number;
  rejected: number;
  rejectedByKind: Record<string, number>;
}

/** Dispatch -> its parent configuration sync: running totals (counts only). */
export const dispatchProgressSignal = defineSignal<[DispatchTotals]>('dispatchProgress');
