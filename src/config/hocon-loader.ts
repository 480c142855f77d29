// HOCON config trees (alpine-cloud-images' own format), resolved exactly as HOCON resolves them:
// `include required(...)`, `${...}` substitutions, quoted keys such as "3.20", `key = null` resets.
//
// @pushcorn/hocon-parser's top-level parse() sorts keys alphabetically, which would lose the dimension order
// (it names the images), so its Context class is used directly: it keeps document order. Strict mode keeps
// values such as 0755 as strings. After resolving, the parsed node tree is walked (read only) to learn the file,
// line and column of every key, for error messages.
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import hocon from '@pushcorn/hocon-parser';
import { isInside } from '../util/fs.js';
import { redactText } from '../util/redact.js';
import { ConfigError } from './errors.js';
import { checkConfigSize, checkConfigText, checkTreeDepth, configFiles, depthError } from './limits.js';
import { isPlainObject } from './merge.js';
import { type Location, SourceIndex } from './source.js';
import type { LoadedTree } from './yaml-loader.js';

interface HNode {
  readonly constructor: { readonly name: string };
  readonly children?: unknown[];
  readonly key?: { readonly resolution?: unknown } | null;
  readonly value?: unknown;
  readonly firstToken?: { readonly line?: number; readonly col?: number } | null;
  readonly context?: { readonly url?: { readonly href: string } | null } | null;
}

interface HContext {
  readonly node?: unknown;
  readonly url?: { readonly href: string } | null;
}

function isNode(v: unknown): v is HNode {
  return typeof v === 'object' && v !== null && Array.isArray((v as HNode).children);
}

function urlPath(href: string | undefined): string | undefined {
  if (!href) return undefined;
  try {
    return href.startsWith('file:') ? fileURLToPath(href) : href;
  } catch {
    return href;
  }
}

export async function loadHoconTree(file: string, display: (abs: string) => string): Promise<LoadedTree> {
  const abs = resolve(file);
  // the parser reads included files itself: every file it could include (the config tree) is checked first
  const root = realpathSync(dirname(abs));
  for (const f of new Set([abs, ...configFiles(dirname(abs))])) {
    checkConfigSize(f, display(f));
    const text = readFileSync(f, 'utf8');
    checkConfigText(text, display(f));
    checkIncludes(text, f, root, display);
  }
  const ctx = new hocon.Context({ url: abs, strict: true, required: true });
  let tree: unknown;
  try {
    tree = await ctx.resolve();
  } catch (err) {
    throw depthError(err, display(abs)) ?? hoconError(err, abs, display);
  }
  if (!isPlainObject(tree)) {
    throw new ConfigError('the top-level config must be an object', { location: { file: display(abs) } });
  }
  checkTreeDepth(tree, display(abs));
  const index = new SourceIndex();
  const files = new Set<string>([abs]);
  walk(ctx.node, [], index, files, display, 0);
  return { tree, index, files: [...files] };
}

function walk(
  node: unknown,
  prefix: readonly string[],
  index: SourceIndex,
  files: Set<string>,
  display: (abs: string) => string,
  depth: number,
): void {
  if (!isNode(node) || depth > 200) return;
  const kind = node.constructor.name;
  if (kind === 'FieldNode') {
    const keyPath = node.key?.resolution;
    if (!Array.isArray(keyPath)) return;
    const path = [...prefix, ...keyPath.map(String)];
    const file = urlPath(node.context?.url?.href);
    if (file) {
      files.add(file);
      const t = node.firstToken;
      index.add(path, { file: display(file), line: t?.line, col: t?.col });
    }
    if (node.value) walk(node.value, path, index, files, display, depth + 1);
    return;
  }
  if (kind === 'IncludeNode') {
    for (const c of node.children ?? []) {
      const included = c as HContext;
      if (included && typeof included === 'object' && 'node' in included) {
        walk(included.node, prefix, index, files, display, depth + 1);
      }
    }
    return;
  }
  if (kind === 'ArrayNode') return;
  for (const c of node.children ?? []) walk(c, prefix, index, files, display, depth + 1);
}

/** Turn the parser's error text into "file:line:col: message", naming the including file for includes. */
function hoconError(err: unknown, topFile: string, display: (abs: string) => string): ConfigError {
  const raw = err instanceof Error ? err.message : String(err);
  const pos = /line: (\d+), col: (\d+)(?:, file: ([^\s)}]+))?/.exec(raw);
  const file = urlPath(pos?.[3]) ?? topFile;
  const location: Location = {
    file: display(file),
    ...(pos ? { line: Number(pos[1]), col: Number(pos[2]) } : {}),
  };
  let message = raw
    .replace(/\s*\(Source: [\s\S]*$/, '')
    .replace(/\s*Token: \{[\s\S]*$/, '')
    .replace(/\s*\((?:text: [\s\S]*?, )?line: \d+[^)]*\)\s*$/, '')
    .trim();
  const inc =
    /^Unable to include the resource "(?:required\()?(?:file\()?(?:url\()?"?([^")]+)"?\)*"\.?$/.exec(message);
  if (inc?.[1]) {
    const target = resolve(dirname(file), inc[1]);
    message = existsSync(target)
      ? `include "${inc[1]}": could not be resolved (${display(target)})`
      : `include "${inc[1]}": file not found (${display(target)})`;
  } else {
    message = `HOCON error: ${message}`;
  }
  return new ConfigError(message, { location });
}

// include "x", include file("x"), include required(file("x")), include url("…"), include classpath("…")
const INCLUDE_RE = /^[ \t]*include\s+(?:required\(\s*)?(?:(file|url|classpath)\(\s*)?"([^"]*)"/gm;

/**
 * Includes must stay inside the config tree (`root`): checked in the text before the parser reads anything, since
 * the parser reads included files itself. url() and classpath() includes are refused (not files of the tree).
 */
function checkIncludes(text: string, file: string, root: string, display: (abs: string) => string): void {
  for (const m of text.matchAll(INCLUDE_RE)) {
    const kind = m[1] ?? 'file';
    const target = m[2] ?? '';
    const line = text.slice(0, m.index).split('\n').length;
    const location = { file: display(file), line };
    let path: string | undefined;
    if (kind === 'file') path = resolve(dirname(file), target);
    else if (kind === 'url' && target.startsWith('file:')) path = urlPath(target);
    if (path === undefined) {
      throw new ConfigError(
        `include ${kind}("${redactText(target)}"): only files of the config tree may be included`,
        {
          location,
        },
      );
    }
    let real = path;
    try {
      real = realpathSync(path);
    } catch {
      // a missing file is reported by the parser, naming it
    }
    if (!isInside(real, root)) {
      throw new ConfigError(
        `include "${target}": outside the config tree ${display(root)} (includes may only read files of the tree they belong to)`,
        { location },
      );
    }
  }
}
