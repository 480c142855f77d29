// YAML config trees: several files joined by `include`, several documents layered in order.
//
// - Any mapping may hold `include: FILE` or `include: [FILE, ...]` (paths relative to the including file).
//   The included files' contents are merged first (in order), then the mapping's own keys on top of them,
//   wherever `include` appears in the mapping. Objects merge; arrays, scalars and null replace.
// - A file may hold several YAML documents (separated by `---`); they are merged in order with the same rule,
//   so `key: null` in one document and `key: {...}` in the next resets what an include brought in.
// - `<<: *anchor` merges the anchored mapping(s) like an include.
// - Keys are taken as written: `3.20:` is the key "3.20", not the number 3.2.
import { readFileSync, realpathSync, statSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { type Document, LineCounter, parseAllDocuments } from 'yaml';
import { isInside } from '../util/fs.js';
import { ConfigError } from './errors.js';
import { checkConfigSize, checkConfigText, checkTreeDepth, depthError, MAX_CONFIG_VALUES } from './limits.js';
import { isPlainObject, mergeOverride, type PlainObject } from './merge.js';
import { type Location, SourceIndex } from './source.js';
import { readConfigYamlFast } from './yaml-config-fast.js';
import { Unsupported } from './yaml-fast.js';
import { fromLibrary, type MapNode, type YamlDocs, type YNode } from './yaml-nodes.js';

export interface LoadedTree {
  readonly tree: PlainObject;
  readonly index: SourceIndex;
  /** every file read, absolute */
  readonly files: readonly string[];
}

/** the file a node is in */
interface Site {
  readonly file: string;
}

const INCLUDE = 'include';
const MERGE = '<<';

/**
 * Load a YAML config tree from its top-level file. Includes must stay inside `root`, the config tree the file
 * belongs to (by default the top-level file's directory): an include cannot read other files of the machine.
 */
export function loadYamlTree(file: string, display: (abs: string) => string, root?: string): LoadedTree {
  const loader = new YamlTreeLoader(display, realpathSync(root ?? dirname(resolve(file))));
  const tree = loader.loadFile(resolve(file), [], undefined);
  if (!isPlainObject(tree)) {
    throw new ConfigError('the top-level config must be a mapping', { location: { file: display(file) } });
  }
  checkTreeDepth(tree, display(file));
  return { tree, index: loader.index, files: [...loader.cache.keys()] };
}

class YamlTreeLoader {
  readonly cache = new Map<string, YamlDocs>();
  readonly index = new SourceIndex();
  private readonly stack: string[] = [];
  private values = 0;
  private readonly display: (abs: string) => string;

  private readonly root: string;
  /** include target -> inside the tree (the same files are included many times) */
  private readonly checked = new Map<string, boolean>();

  private inTree(target: string): boolean {
    let ok = this.checked.get(target);
    if (ok === undefined) {
      ok = isInside(realpathSync(target), this.root);
      this.checked.set(target, ok);
    }
    return ok;
  }

  constructor(display: (abs: string) => string, root: string) {
    this.display = display;
    this.root = root;
  }

  private parse(file: string): YamlDocs {
    const cached = this.cache.get(file);
    if (cached) return cached;
    checkConfigSize(file, this.display(file));
    const text = readFileSync(file, 'utf8');
    checkConfigText(text, this.display(file));
    let docs: YamlDocs;
    try {
      // the plain style config files are written in; anything else goes to the YAML library
      docs = readConfigYamlFast(text);
    } catch (err) {
      if (!(err instanceof Unsupported)) throw err;
      docs = this.parseWithLibrary(file, text);
    }
    this.cache.set(file, docs);
    return docs;
  }

  private parseWithLibrary(file: string, text: string): YamlDocs {
    const lc = new LineCounter();
    // duplicate keys are found by mapValue (the library's own check compares every pair of keys)
    const parse = () => {
      try {
        return parseAllDocuments(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: false });
      } catch (err) {
        throw depthError(err, this.display(file)) ?? err;
      }
    };
    const docs = parse();
    const list: Document.Parsed[] = [...docs];
    const errors = 'empty' in docs ? docs.errors : list.flatMap((d) => d.errors);
    const err = errors[0];
    if (err) {
      const pos = lc.linePos(err.pos[0]);
      const message = err.message.split('\n')[0]?.replace(/ at line \d+, column \d+:?$/, '') ?? err.message;
      throw new ConfigError(`YAML syntax error: ${message}`, {
        location: { file: this.display(file), line: pos?.line, col: pos?.col },
      });
    }
    return fromLibrary(list, lc);
  }

  loadFile(file: string, prefix: readonly string[], from: Location | undefined): unknown {
    if (this.stack.includes(file)) {
      const chain = [...this.stack.slice(this.stack.indexOf(file)), file].map(this.display).join(' -> ');
      throw new ConfigError(`include cycle: ${chain}`, { location: from });
    }
    this.stack.push(file);
    try {
      const docs = this.parse(file);
      const site: Site = { file };
      let out: unknown = {};
      for (const contents of docs) {
        if (contents === null || (contents.kind === 'scalar' && contents.value === null)) continue;
        if (contents.kind !== 'map') {
          throw new ConfigError('expected a mapping at the top of the document', {
            location: this.loc(site, contents),
          });
        }
        out = mergeOverride(out, this.mapValue(contents, site, prefix));
      }
      return out;
    } finally {
      this.stack.pop();
    }
  }

  private loc(site: Site, node: YNode | null | undefined): Location {
    const file = this.display(site.file);
    if (!node || node.line === 0) return { file };
    return { file, line: node.line, col: node.col };
  }

  private keyString(site: Site, key: YNode | null): string {
    if (key?.kind === 'scalar') {
      const k = key.keyText;
      if (k === undefined) throw new ConfigError('empty mapping key', { location: this.loc(site, key) });
      if (k === '__proto__') {
        throw new ConfigError('the key "__proto__" is not allowed', { location: this.loc(site, key) });
      }
      return k;
    }
    throw new ConfigError('mapping keys must be plain strings', { location: this.loc(site, key) });
  }

  private value(node: YNode | null, site: Site, path: readonly string[], depth = 0): unknown {
    if (node === null) return null;
    // aliases expand: a few lines can stand for billions of values
    if (++this.values > MAX_CONFIG_VALUES) {
      throw new ConfigError(
        `expands to more than ${MAX_CONFIG_VALUES} values (YAML aliases?); the limit is MAX_CONFIG_VALUES`,
        { location: this.loc(site, node) },
      );
    }
    switch (node.kind) {
      case 'alias': {
        if (depth > 50) throw new ConfigError('alias nesting too deep', { location: this.loc(site, node) });
        const target = node.target();
        if (target === undefined) {
          throw new ConfigError(`unknown alias *${node.name}`, { location: this.loc(site, node) });
        }
        return this.value(target, site, path, depth + 1);
      }
      case 'scalar': {
        const v = node.value;
        if (v instanceof Date) return v.toISOString();
        if (typeof v === 'bigint') return Number(v);
        return v;
      }
      case 'seq':
        return node.items.map((n) => this.value(n, site, path, depth));
      case 'map':
        return this.mapValue(node, site, path);
      default:
        throw new ConfigError('unsupported YAML node', { location: this.loc(site, node) });
    }
  }

  private mapValue(map: MapNode, site: Site, path: readonly string[]): PlainObject {
    let out: PlainObject = {};
    const seen = new Set<string>();
    for (const pair of map.items) {
      const key = this.keyString(site, pair.key);
      if (seen.has(key)) {
        throw new ConfigError(`YAML syntax error: Map keys must be unique ("${key}" is repeated)`, {
          location: this.loc(site, pair.key),
        });
      }
      seen.add(key);
    }
    // includes and merge keys come first, wherever they are written
    for (const pair of map.items) {
      const key = this.keyString(site, pair.key);
      if (key === INCLUDE) {
        for (const inc of this.includeList(site, pair.value)) {
          const target = isAbsolute(inc.path) ? inc.path : resolve(dirname(site.file), inc.path);
          let ok = false;
          try {
            ok = statSync(target).isFile();
          } catch {
            ok = false;
          }
          if (!ok) {
            throw new ConfigError(`include "${inc.path}": file not found (${this.display(target)})`, {
              location: inc.loc,
            });
          }
          if (!this.inTree(target)) {
            throw new ConfigError(
              `include "${inc.path}": outside the config tree ${this.display(this.root)} (includes may only read files of the tree they belong to)`,
              { location: inc.loc },
            );
          }
          const included = this.loadFile(target, path, inc.loc);
          if (!isPlainObject(included)) {
            throw new ConfigError(`include "${inc.path}": the included file must hold a mapping`, {
              location: inc.loc,
            });
          }
          out = mergeOverride(out, included) as PlainObject;
        }
      } else if (key === MERGE) {
        const v = this.value(pair.value, site, path);
        const list = Array.isArray(v) ? v : [v];
        for (const m of list) {
          if (!isPlainObject(m)) {
            throw new ConfigError('"<<" must merge a mapping or a list of mappings', {
              location: this.loc(site, pair.value),
            });
          }
          out = mergeOverride(out, m) as PlainObject;
        }
      }
    }
    for (const pair of map.items) {
      const key = this.keyString(site, pair.key);
      if (key === INCLUDE || key === MERGE) continue;
      const keyPath = [...path, key];
      this.index.add(keyPath, this.loc(site, pair.key));
      const v = this.value(pair.value, site, keyPath);
      // `out` is always a fresh object here, so it may be changed in place
      out[key] = Object.hasOwn(out, key) ? mergeOverride(out[key], v) : v;
    }
    return out;
  }

  private includeList(site: Site, node: YNode | null): { path: string; loc: Location }[] {
    const one = (n: YNode | null): { path: string; loc: Location } => {
      const loc = this.loc(site, n);
      if (n?.kind !== 'scalar' || typeof n.value !== 'string' || n.value === '') {
        throw new ConfigError('include: expected a file name or a list of file names', { location: loc });
      }
      return { path: n.value, loc };
    };
    if (node?.kind === 'seq') return node.items.map(one);
    return [one(node)];
  }
}
