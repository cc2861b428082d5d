// The Sandbox (src/sandbox, reworked beside this change) still imports the old name from here.
export { constantTimeEqual as same } from './constant-time-equal';
