import pino, { type Logger } from 'pino';
import { HumanLog } from './human-log.js';
import { redactValue } from './redact.js';

export type LogFormat = 'pretty' | 'json';
export type { Logger };

export interface LogOptions {
  format: LogFormat;
  debug: boolean;
  color: boolean;
  /** where log lines go; stderr by default so stdout stays for reports */
  fd?: number;
  /** the terminal's width for wrapping and the live status area (undefined: not a terminal) */
  width?: number;
}

const human = new WeakMap<Logger, HumanLog>();

/** The live status area of a human-format logger on a terminal, if there is one. */
export function liveArea(log: Logger): HumanLog | undefined {
  const h = human.get(log);
  return h?.live ? h : undefined;
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
  // one line per message for people; the fields stay in --log-format json
  const dest = pino.destination({ fd, sync: true });
  const stream = new HumanLog({
    color: opts.color,
    ...(opts.width !== undefined ? { width: opts.width } : {}),
    write: (s) => dest.write(s),
  });
  const log = pino({ level, redact, hooks, base: undefined }, stream);
  human.set(log, stream);
  return log;
}

/** A logger that discards everything (for unit tests and library use). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
