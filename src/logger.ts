// pino options for keypool. The first defence is never putting a secret in a log object (keys log as
// their name); redaction of credential headers is the backstop.
import { pino, type DestinationStream, type Logger, type LevelWithSilent } from 'pino';

export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers["x-api-key"]',
  'req.headers["api-key"]',
  'headers.authorization',
  'headers["x-api-key"]',
  'headers["api-key"]',
];

export function createLogger(level: LevelWithSilent, destination?: DestinationStream): Logger {
  const options = {
    level,
    base: { name: 'keypool' },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    // pino's default epoch-ms timestamp: cheapest on the per-request line; tools convert it.
  };
  return destination ? pino(options, destination) : pino(options);
}
