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
};
