// Names shared by the worker, the workflows, the web server and the CLI. Workflow-safe: no I/O.
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';

export const TASK_QUEUE = 'espresso';

export const searchAttributes = {
  configurationId: defineSearchAttributeKey('EspressoConfigurationId', SearchAttributeType.KEYWORD),
  esp: defineSearchAttributeKey('EspressoEsp', SearchAttributeType.KEYWORD),
  status: defineSearchAttributeKey('EspressoStatus', SearchAttributeType.KEYWORD),
  contactsUpdated: defineSearchAttributeKey('EspressoContactsUpdated', SearchAttributeType.INT),
  contactsRejected: defineSearchAttributeKey('EspressoContactsRejected', SearchAttributeType.INT),
} as const;

export const allSearchAttributes = Object.values(searchAttributes);

export const workflowIds = {
  selfCheck: (nonce: string) => `self-check/${nonce}`,
  daily: (runDate: string) => `daily/${runDate}`,
  configurationSync: (configurationId: string, runDate: string) => `sync/${configurationId}/${runDate}`,
  /** The one writer of a configuration: this id is its lock (src/workflows/writer.ts). */
  writer: (configurationId: string) => `writer/${configurationId}`,
  /**
   * The lease coordinator of one ESP account for the workers of one task queue (it runs on that
   * queue, so the workers that ask it are the ones that run it). src/workflows/esp-account.ts.
   */
  espAccount: (taskQueue: string, esp: string, accountId: string) =>
    `esp-account/${taskQueue}/${esp}/${accountId}`,
  /** Manual runs get a suffix so they never collide with the scheduled run of the day. */
  manualSync: (configurationId: string, runDate: string, folderSuffix: string) =>
    `sync/${configurationId}/${runDate}/${folderSuffix}`,
};

export const SCHEDULE_ID = 'espresso-daily';
