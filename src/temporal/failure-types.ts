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
} as const;

/** Never retried, whatever the retry policy. */
export const nonRetryableFailureTypes = [
  failureTypes.invalidCredentials,
  failureTypes.requestRejected,
  failureTypes.configurationNotFound,
  failureTypes.chunkMissing,
  failureTypes.corruptData,
  failureTypes.unknownEsp,
];
