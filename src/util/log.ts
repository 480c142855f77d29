import pino, { type Logger } from 'pino';
import pretty from 'pino-pretty';
import { redactValue } from './redact.js';

export type LogFormat = 'pretty' | 'json';
export type { Logger };

export interface LogOptions {
  format: LogFormat;
  debug: boolean;
  color: boolean;
  /** where log lines go; stderr by default so stdout stays for reports */
  fd?: number;
}

/** Keys whose values are never written to logs, wherever they appear in a log object. */
export const REDACT_PATHS = [
  'apiKey',
  '*.apiKey',
  'secretAccessKey',
  '*.secretAccessKey',
  'sessionToken',
  '*.sessionToken',
  'credentials',
  '*.credentials',
  'password',
  '*.password',
  'passphrase',
  '*.passphrase',
  'headers["x-api-key"]',
  '*.headers["x-api-key"]',
];

export function createLogger(opts: LogOptions): Logger {
  const level = opts.debug ? 'debug' : 'info';
  const fd = opts.fd ?? 2;
  const redact = { paths: REDACT_PATHS, censor: '[redacted]' };
  // URLs with credentials, wherever they occur in a message or a field, are shown redacted
  const hooks = {
    logMethod(this: Logger, args: unknown[], method: (...a: unknown[]) => void) {
      method.apply(
        this,
        args.map((a) => redactValue(a)),
      );
    },
  };
  if (opts.format === 'json') {
    return pino({ level, redact, hooks, base: undefined }, pino.destination({ fd, sync: true }));
  }
  const stream = pretty({
    colorize: opts.color,
    sync: true,
    destination: fd,
    translateTime: 'HH:MM:ss',
    ignore: 'pid,hostname',
    singleLine: true,
  });
  return pino({ level, redact, hooks, base: undefined }, stream);
}

/** A logger that discards everything (for unit tests and library use). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
