// The OAuth client espresso is registered as with the Sandbox: shared by the Sandbox (which knows
// it) and espresso's Sandbox processor (which signs in as it), neither importing the other.
/** espresso's OAuth app at the Sandbox; registered with espresso's redirect URI (src/sandbox/setup.ts). */
export const SANDBOX_CLIENT = { id: 'espresso-sandbox', secret: 'espresso-sandbox-secret' };
