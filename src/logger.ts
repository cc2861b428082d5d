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

export type { Logger };
