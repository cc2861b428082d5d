// Every workflow the worker registers. Workflow code is orchestration only: no I/O, no Node APIs.
export { selfCheckWorkflow } from './self-check';
export { dailySyncWorkflow } from './daily-sync';
export { configurationSyncWorkflow } from './configuration-sync';
/** Still registered: dispatch children of runs started by earlier versions. */
export { dispatchWorkflow } from './dispatch';
