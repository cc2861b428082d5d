import pino, { type DestinationStream, type Logger } from 'pino';

/**
 * Fields that may hold secrets or contact emails, at any of the first two levels of a log object.
 * The logger censors them itself, so a careless `log.info({ credentials })` cannot leak.
 */
const SENSITIVE = [
  'apiKey',
  'accessToken',
  'refreshToken',
  'clientSecret',
  'password',
  'secret',
  'token',
  'authorization',
  'Authorization',
  'cookie',
  'credentials',
  'email',
];

export function createLogger(
  name: string,
  level: string = process.env.ESPRESSO_LOG_LEVEL ?? 'info',
  destination?: DestinationStream,
): Logger {
  const options = {
    name,
    level,
    redact: { paths: [...SENSITIVE, ...SENSITIVE.map((f) => `*.${f}`)], censor: '[redacted]' },
  };
  return destination ? pino(options, destination) : pino(options);
}

/**
 * The log of a command (`espresso connect`, ...): on standard error, so what the command prints on
 * standard output stays its own (alerts it sends are log lines too). Written at once: commands exit.
 */
export function createCommandLogger(name: string, level = 'warn'): Logger {
  return createLogger(name, level, pino.destination({ dest: 2, sync: true }));
}

export type { Logger };
