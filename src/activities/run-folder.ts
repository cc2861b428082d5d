// The run folder an activity works in. Workflows of earlier versions sent it under the name
// `runDate`; their activities still in flight (and retried) arrive with that name.
import { ApplicationFailure } from '@temporalio/activity';
import { failureTypes } from '../temporal/failure-types';

/** An activity input as earlier versions sent it: the run's folder under the name `runDate`. */
export type WithEarlierFolderName<T extends { runFolder: string }> = Omit<T, 'runFolder'> & {
  runDate: string;
};

/** The input with its run folder under `runFolder`, whichever name it came with. */
export function withRunFolder<T extends { runFolder: string }>(input: T | WithEarlierFolderName<T>): T {
  if ('runFolder' in input && typeof input.runFolder === 'string') return input;
  const { runDate, ...rest } = input as WithEarlierFolderName<T>;
  if (typeof runDate !== 'string') {
    throw ApplicationFailure.nonRetryable(
      'the activity input names no run folder (runFolder, e.g. 2026-11-28 or 2026-11-28_manual-080503-k3f2)',
      failureTypes.invalidInput,
    );
  }
  return { ...rest, runFolder: runDate } as unknown as T;
}
