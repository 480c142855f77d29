import { UserError } from '../util/errors.js';
import { formatLocation, type Location } from './source.js';

export interface ConfigErrorDetails {
  /** the file (and line/column) at fault, when known */
  readonly location?: Location;
  /** the setting, as a dotted path (e.g. "packages", "Dimensions.cloud.aws") */
  readonly key?: string;
  /** the variant's config_key */
  readonly variant?: string;
  /** every variant with this same error, when there are several (the first is `variant`) */
  readonly variants?: readonly string[];
  /** what was expected, e.g. "a list of whole numbers (MiB)" */
  readonly expected?: string;
  /** the offending value */
  readonly got?: unknown;
  /** the offending value in the first of `variants`, when it differs between them */
  readonly gotFirst?: unknown;
}

/** A user error in the configs; the message names variant, key, file and what was expected. */
export class ConfigError extends UserError {
  readonly details: ConfigErrorDetails;
  /** the message without the variant, key, expectation and location parts */
  readonly reason: string;
  constructor(message: string, details: ConfigErrorDetails = {}) {
    super(composeMessage(message, details));
    this.name = 'ConfigError';
    this.details = details;
    this.reason = message;
  }

  /**
   * The same error for every variant in `variants` (in the order given); `gotVaries`: the value found differs
   * between them (lists merged from several layers), the one shown is the first variant's.
   */
  forVariants(variants: readonly string[], gotVaries = false): ConfigError {
    if (variants.length <= 1) return this;
    const d = { ...this.details, variant: variants[0], variants };
    return new ConfigError(this.reason, gotVaries ? { ...d, got: undefined, gotFirst: this.details.got } : d);
  }

  /**
   * What makes two errors the same error, whichever variant they were found in: the same problem with the same
   * key set at the same line (the value found may differ: lists append across layers).
   */
  get sameness(): string {
    const d = this.details;
    return [
      this.reason,
      d.key ?? '',
      d.expected ?? '',
      d.location?.line !== undefined || d.got === undefined ? '' : describeValue(d.got),
      d.location ? formatLocation(d.location) : '',
    ].join('\u0000');
  }
}

/**
 * Every error found in the configs, reported at once: the same error in several variants is one entry naming
 * them all. With a single error it is that error.
 */
export class ConfigErrors extends ConfigError {
  readonly errors: readonly ConfigError[];
  constructor(errors: readonly ConfigError[]) {
    super(`${errors.length} errors in the configs:\n${errors.map((e) => `  - ${e.message}`).join('\n')}`, {});
    this.name = 'ConfigErrors';
    this.errors = errors;
  }
}

/** Merge errors found per variant: identical ones (but for the variant) become one naming every variant. */
export function collectErrors(found: readonly ConfigError[]): ConfigError[] {
  const groups = new Map<string, { first: ConfigError; variants: string[]; gots: Set<string> }>();
  for (const e of found.flatMap((x) => (x instanceof ConfigErrors ? x.errors : [x]))) {
    const k = e.sameness;
    const g = groups.get(k);
    const vs = e.details.variants ?? (e.details.variant ? [e.details.variant] : []);
    const got = describeValue(e.details.got);
    if (g) {
      for (const v of vs) if (!g.variants.includes(v)) g.variants.push(v);
      g.gots.add(got);
    } else {
      groups.set(k, { first: e, variants: [...vs], gots: new Set([got]) });
    }
  }
  return [...groups.values()].map((g) => g.first.forVariants(g.variants, g.gots.size > 1));
}

/** Throw what was found: nothing, the one error, or every error at once. */
export function throwErrors(found: readonly ConfigError[]): void {
  // (called for every variant, nearly always with nothing)
  if (found.length === 0) return;
  const errors = collectErrors(found);
  if (errors.length === 1) throw errors[0];
  if (errors.length > 1) throw new ConfigErrors(errors);
}

export function describeValue(v: unknown): string {
  let s: string;
  try {
    s = v === undefined ? 'nothing' : JSON.stringify(v);
  } catch {
    s = String(v);
  }
  // control and bidirectional characters are shown escaped, never written to the terminal as they are
  s = s.replace(
    /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

const SHOWN_VARIANTS = 3;

function variantList(vs: readonly string[]): string {
  const shown = vs.slice(0, SHOWN_VARIANTS).join(', ');
  return vs.length > SHOWN_VARIANTS
    ? `variants ${shown} and ${vs.length - SHOWN_VARIANTS} more`
    : `variants ${shown}`;
}

function composeMessage(message: string, d: ConfigErrorDetails): string {
  const parts: string[] = [];
  if (d.variants && d.variants.length > 1) parts.push(`${variantList(d.variants)}:`);
  else if (d.variant) parts.push(`variant ${d.variant}:`);
  if (d.key) parts.push(`${d.key}:`);
  let text = message;
  if (d.expected) {
    const got =
      d.got !== undefined
        ? `, got ${describeValue(d.got)}`
        : d.gotFirst !== undefined
          ? `, got ${describeValue(d.gotFirst)} in the first of them`
          : '';
    text = `${message ? `${message}: ` : ''}expected ${d.expected}${got}`;
  }
  parts.push(text);
  const body = parts.join(' ');
  if (!d.location) return body;
  const where = formatLocation(d.location);
  // syntax-style errors (no variant/key) read best as "file:line:col: message"
  if (!d.variant && !d.variants && !d.key) return `${where}: ${body}`;
  return `${body} (${where})`;
}
