import { foreignResponse } from './http-error.js';

/**
 * An error caused by the user's input (arguments, configs, environment) rather than a bug.
 * The CLI prints its message on one line and exits with `exitCode`, without a stack trace.
 */
export class UserError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode = 1) {
    super(message);
    this.name = 'UserError';
    this.exitCode = exitCode;
  }
}

/** A usage error (bad step, option or option value): exit code 2, like commander's own. */
export class UsageError extends UserError {
  constructor(message: string) {
    super(message, 2);
    this.name = 'UsageError';
  }
}

export function errorMessage(err: unknown): string {
  // an HTML page from a proxy instead of the API's answer: endpoint, status and first line, in one line
  const foreign = foreignResponse(err);
  if (foreign) return foreign;
  if (err instanceof Error) return err.message;
  return String(err);
}
