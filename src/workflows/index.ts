// Every workflow the worker registers. Workflow code is orchestration only: no I/O, no Node APIs.
export { selfCheckWorkflow } from './self-check';
