// What the web server is given: imported by the app and by every route module.
import type { Connection } from '@temporalio/client';
import type { AlertSender } from '../alerts';
import type { PayloadKeys } from '../codec';
import type { Logger } from '../logger';
import type { ProcessorRegistry } from '../processors/registry';
import type { Stores } from '../storage';
import type { FailedAuthOptions } from './failed-auth';

export interface WebDeps {
  stores: Stores;
  processors: ProcessorRegistry;
  /** Re-authorizing a configuration in needs_reauth sends a recovery alert. */
  alerts?: AlertSender;
  /** Lazily connected Temporal client connection (the web server starts even while Temporal is down). */
  temporal: () => Promise<Connection>;
  temporalNamespace: string;
  temporalUiUrl: string;
  /** Payload encryption keys: Temporal clients encrypt with them, and /codec decodes for the Web UI. */
  payloadKeys: PayloadKeys;
  web: {
    publicUrl: string;
    sessionSecret: string;
    admin: { user?: string; password?: string; token?: string };
    /** POST requests per IP per minute. */
    postsPerMinute?: number;
    /**
     * Which proxies' X-Forwarded-For to believe (Express's `trust proxy`: a hop count or
     * addresses). Default: none, so a client cannot pick the address its rate limit counts.
     */
    trustProxy?: false | number | string;
    /** Lock-outs after failed admin and codec sign-ins (tests shorten them). */
    failedAuth?: FailedAuthOptions;
  };
  log?: Logger;
}
