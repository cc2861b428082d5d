// The one place that wires stores (and later ESP processors) into activities; tests call
// createActivities with their own stores, the worker with the configured ones.
import type { Stores } from '../storage';
import { createSelfCheckActivities } from './self-check';

export interface ActivityDeps {
  stores: Stores;
}

export function createActivities(deps: ActivityDeps) {
  return {
    ...createSelfCheckActivities(deps),
  };
}

export type Activities = ReturnType<typeof createActivities>;
