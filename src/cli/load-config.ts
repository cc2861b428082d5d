// The sandbox's entry point still imports it from here (src/sandbox is being reworked beside this).
export { loadConfigOrExit } from '../load-config';
