import { UserError } from '../util/errors.js';
import { formatLocation, type Location } from './source.js';

export interface ConfigErrorDetails {
  /** the file (and line/column) at fault, when known */
  readonly location?: Location;
  /** the setting, as a dotted path (e.g. "packages", "Dimensions.cloud.aws") */
  readonly key?: string;
  /** the variant's config_key */
  readonly variant?: string;
  /** what was expected, e.g. "a list of whole numbers (MiB)" */
  readonly expected?: string;
  /** the offending value */
  readonly got?: unknown;
}

/** A user error in the configs; the message names variant, key, file and what was expected. */
export class ConfigError extends UserError {
  readonly details: ConfigErrorDetails;
  constructor(message: string, details: ConfigErrorDetails = {}) {
    super(composeMessage(message, details));
    this.name = 'ConfigError';
    this.details = details;
  }
}

export function describeValue(v: unknown): string {
  let s: string;
  try {
    s = v === undefined ? 'nothing' : JSON.stringify(v);
  } catch {
    s = String(v);
  }
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

function composeMessage(message: string, d: ConfigErrorDetails): string {
  const parts: string[] = [];
  if (d.variant) parts.push(`variant ${d.variant}:`);
  if (d.key) parts.push(`${d.key}:`);
  let text = message;
  if (d.expected) {
    text = `${message ? `${message}: ` : ''}expected ${d.expected}${d.got !== undefined ? `, got ${describeValue(d.got)}` : ''}`;
  }
  parts.push(text);
  const body = parts.join(' ');
  if (!d.location) return body;
  const where = formatLocation(d.location);
  // syntax-style errors (no variant/key) read best as "file:line:col: message"
  if (!d.variant && !d.key) return `${where}: ${body}`;
  return `${body} (${where})`;
}
