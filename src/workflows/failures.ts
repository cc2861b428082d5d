import { ActivityFailure, ApplicationFailure, ChildWorkflowFailure } from '@temporalio/workflow';

/** The failure at the root of an activity or child workflow failure (what actually went wrong). */
export function rootCause(err: unknown): unknown {
  let current: unknown = err;
  while ((current instanceof ActivityFailure || current instanceof ChildWorkflowFailure) && current.cause) {
    current = current.cause;
  }
  return current;
}

/** The application failure type at the root (e.g. `InvalidCredentials`), if any. */
export function failureType(err: unknown): string | undefined {
  const root = rootCause(err);
  return root instanceof ApplicationFailure ? (root.type ?? undefined) : undefined;
}

export function rootMessage(err: unknown): string {
  const root = rootCause(err);
  return root instanceof Error ? root.message : String(root);
}
