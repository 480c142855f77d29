// Limits on config files, so that a huge or deeply nested file (or a YAML alias bomb) is refused quickly with a
// message naming the file and the limit, instead of exhausting memory, time or the stack.
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError } from './errors.js';

/** No config file is larger than this (alpine-cloud-images' are a few KiB). */
export const MAX_CONFIG_BYTES = 4 * 1024 * 1024;
/** Objects and lists nest at most this deep (the usual matrix needs about 6). */
export const MAX_CONFIG_DEPTH = 64;
/** At most this many values are produced from one config tree (YAML aliases expand). */
export const MAX_CONFIG_VALUES = 1_000_000;

/** Refuse a file larger than MAX_CONFIG_BYTES; `shown` is how the file is named in messages. */
export function checkConfigSize(abs: string, shown: string): void {
  let size: number;
  try {
    size = statSync(abs).size;
  } catch {
    return; // the reader reports a missing file
  }
  if (size > MAX_CONFIG_BYTES) {
    throw new ConfigError(
      `config file is ${size} bytes; the limit is ${MAX_CONFIG_BYTES} bytes (MAX_CONFIG_BYTES)`,
      { location: { file: shown } },
    );
  }
}

/**
 * The deepest nesting of brackets (`[`, `{`) outside quoted strings and comments, and the line it is reached on.
 * Linear in the text; both YAML flow collections and HOCON objects nest this way.
 */
export function bracketDepth(text: string): { depth: number; line: number } {
  let depth = 0;
  let max = 0;
  let maxLine = 1;
  let line = 1;
  let quote = '';
  let comment = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '\n') {
      line++;
      comment = false;
      if (quote === "'") quote = ''; // YAML single quotes may span lines, but never matter for depth
      continue;
    }
    if (comment) continue;
    if (quote) {
      if (c === '\\' && quote === '"') i++;
      else if (c === quote) quote = '';
      continue;
    }
    if (c === '"') quote = '"';
    else if (c === "'" && /[\s[{,:]/.test(text[i - 1] ?? ' ')) quote = "'";
    else if (c === '#' && /\s/.test(text[i - 1] ?? ' ')) comment = true;
    else if (c === '[' || c === '{') {
      depth++;
      if (depth > max) {
        max = depth;
        maxLine = line;
      }
    } else if ((c === ']' || c === '}') && depth > 0) depth--;
  }
  return { depth: max, line: maxLine };
}

/** Refuse text nested deeper than MAX_CONFIG_DEPTH before it is parsed. */
export function checkConfigText(text: string, shown: string): void {
  const { depth, line } = bracketDepth(text);
  if (depth > MAX_CONFIG_DEPTH) {
    throw new ConfigError(
      `nested ${depth} levels deep; the limit is ${MAX_CONFIG_DEPTH} levels (MAX_CONFIG_DEPTH)`,
      { location: { file: shown, line } },
    );
  }
}

/** Refuse a parsed tree nested deeper than MAX_CONFIG_DEPTH (indentation nests too). */
export function checkTreeDepth(tree: unknown, shown: string): void {
  const walk = (v: unknown, depth: number, path: string): void => {
    if (v === null || typeof v !== 'object') return;
    if (depth > MAX_CONFIG_DEPTH) {
      throw new ConfigError(
        `nested more than ${MAX_CONFIG_DEPTH} levels deep (at ${path}); the limit is ${MAX_CONFIG_DEPTH} levels (MAX_CONFIG_DEPTH)`,
        { location: { file: shown } },
      );
    }
    const entries = Array.isArray(v) ? v.map((x, i) => [String(i), x] as const) : Object.entries(v);
    for (const [k, x] of entries) walk(x, depth + 1, path ? `${path}.${k}` : k);
  };
  walk(tree, 0, '');
}

/** Every file under `dir` (recursively, at most 10 000 entries), for checking before a parser reads them. */
export function configFiles(dir: string): string[] {
  const out: string[] = [];
  const visit = (d: string, level: number) => {
    if (level > 16 || out.length > 10_000) return;
    let entries: import('node:fs').Dirent[];
    try {
      entries = readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const p = join(d, e.name);
      if (e.isDirectory()) visit(p, level + 1);
      else out.push(p);
    }
  };
  visit(dir, 0);
  return out;
}

/** A stack overflow while parsing means the nesting was too deep: say so instead of crashing. */
export function depthError(err: unknown, shown: string): ConfigError | undefined {
  if (err instanceof RangeError && /call stack/i.test(err.message)) {
    return new ConfigError(
      `nested too deeply to parse; the limit is ${MAX_CONFIG_DEPTH} levels (MAX_CONFIG_DEPTH)`,
      {
        location: { file: shown },
      },
    );
  }
  return undefined;
}
