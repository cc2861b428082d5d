// Activity failure types (workflow-safe: no I/O). src/activities/failures.ts maps errors to them.
export const failureTypes = {
  invalidCredentials: 'InvalidCredentials',
  rateLimited: 'RateLimited',
  transient: 'Transient',
  requestRejected: 'RequestRejected',
  configurationNotFound: 'ConfigurationNotFound',
  chunkMissing: 'ChunkMissing',
  corruptData: 'CorruptData',
  unknownEsp: 'UnknownEsp',
  /** An error espresso does not know: retried a few times, then not (src/activities/failures.ts). */
  unexpected: 'Unexpected',
  /** The configuration was disabled or lost its credentials while its run was writing. */
  configurationInactive: 'ConfigurationInactive',
  /** A configuration run passed its deadline and was stopped. */
  runDeadline: 'RunDeadline',
  /** Asked for something espresso never does (a malformed input, writing a dry run's values). */
  invalidInput: 'InvalidInput',
} as const;

/** Never retried, whatever the retry policy. */
export const nonRetryableFailureTypes = [
  failureTypes.invalidCredentials,
  failureTypes.requestRejected,
  failureTypes.configurationNotFound,
  failureTypes.chunkMissing,
  failureTypes.corruptData,
  failureTypes.unknownEsp,
  failureTypes.configurationInactive,
  failureTypes.runDeadline,
  failureTypes.invalidInput,
];
