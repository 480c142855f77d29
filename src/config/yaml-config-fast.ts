// A fast reader for config files in the plain style config trees are written in: block maps and lists, plain,
// "double-" and 'single-quoted' scalars, one-line flow lists and maps (`[a, b]`, `{include: x.yaml}`), comments
// and several documents (`---`). It gives the same nodes, values and positions as the YAML library does for such
// text (test/unit/yaml-config-fast.test.ts compares the two on every config file of the repository and on
// generated ones); for anything else (anchors, aliases, tags, block scalars, multi-line flow or plain scalars,
// tabs, directives, odd indentation) it throws Unsupported and the caller uses the library.
//
// Why: the library is general and slow to start; the config tree of a run is ~25 small files, and reading them
// with it was a tenth of `./build configs`.
import { Unsupported } from './yaml-fast.js';
import type { MapNode, NodePos, ScalarNode, SeqNode, YamlDocs, YNode } from './yaml-nodes.js';

interface Line {
  /** 1-based line number */
  readonly no: number;
  readonly indent: number;
  /** the line without its indentation and without a trailing comment */
  readonly text: string;
}

/** A plain scalar's value in the YAML 1.2 core schema (the library's default), as the library computes it. */
function plainScalar(s: string): unknown {
  if (s === '~' || s === 'null' || s === 'Null' || s === 'NULL') return null;
  if (s === 'true' || s === 'True' || s === 'TRUE') return true;
  if (s === 'false' || s === 'False' || s === 'FALSE') return false;
  const c = s.charCodeAt(0);
  if ((c >= 48 && c <= 57) || c === 43 || c === 45 || c === 46) {
    if (/^[-+]?[0-9]+$/.test(s)) return parseInt(s, 10);
    if (/^[-+]?(?:\.[0-9]+|[0-9]+\.[0-9]*)$/.test(s)) return parseFloat(s);
    // octal, hexadecimal, exponents, .inf and .nan: rare in configs, left to the library
    if (
      /^0o[0-7]+$/.test(s) ||
      /^0x[0-9a-fA-F]+$/.test(s) ||
      /^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)[eE][-+]?[0-9]+$/.test(s) ||
      /^(?:[-+]?\.(?:inf|Inf|INF)|\.nan|\.NaN|\.NAN)$/.test(s)
    ) {
      throw new Unsupported(s);
    }
  }
  return s;
}

/** Where a plain scalar's text ends on a line: before " #" (a comment), trailing blanks removed. */
function stripComment(text: string): string {
  const hash = text.indexOf(' #');
  return (hash >= 0 ? text.slice(0, hash) : text).trimEnd();
}

const FLOW_END = new Set([',', ']', '}']);

/** One line's flow collection or quoted scalar, read from `pos`. */
class FlowReader {
  pos: number;
  constructor(
    private readonly s: string,
    start: number,
    private readonly line: number,
    /** column of s[0] */
    private readonly col0: number,
  ) {
    this.pos = start;
  }

  private at(): NodePos {
    return { line: this.line, col: this.col0 + this.pos };
  }

  private skipSpaces(): void {
    while (this.s[this.pos] === ' ') this.pos++;
  }

  /** a quoted scalar starting at pos */
  quoted(): ScalarNode {
    const at = this.at();
    const q = this.s[this.pos];
    if (q === '"') {
      const m = /^"(?:[^"\\]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*"/.exec(this.s.slice(this.pos));
      if (!m) throw new Unsupported('double-quoted scalar');
      this.pos += m[0].length;
      const value = JSON.parse(m[0]) as string;
      return { kind: 'scalar', value, keyText: value, ...at };
    }
    let value = '';
    let i = this.pos + 1;
    for (;;) {
      const j = this.s.indexOf("'", i);
      if (j < 0) throw new Unsupported('single-quoted scalar');
      value += this.s.slice(i, j);
      if (this.s[j + 1] === "'") {
        value += "'";
        i = j + 2;
        continue;
      }
      this.pos = j + 1;
      break;
    }
    return { kind: 'scalar', value, keyText: value, ...at };
  }

  /** a node inside a flow collection */
  private item(): YNode {
    this.skipSpaces();
    const c = this.s[this.pos];
    if (c === '[') return this.seq();
    if (c === '{') return this.map();
    if (c === '"' || c === "'") return this.quoted();
    const at = this.at();
    let end = this.pos;
    while (end < this.s.length && !FLOW_END.has(this.s[end]!)) {
      if (this.s[end] === ':' && (this.s[end + 1] === ' ' || FLOW_END.has(this.s[end + 1] ?? ','))) break;
      end++;
    }
    const text = this.s.slice(this.pos, end).trimEnd();
    // (- ? : may start a plain scalar when a non-blank follows: -cpu)
    if (text === '' || /^[[\]{}#&*!|>'"%@`,]|^[-?:](?:$|[\s,[\]{}])/.test(text) || text.includes(' #')) {
      throw new Unsupported('flow scalar');
    }
    this.pos = end;
    return { kind: 'scalar', value: plainScalar(text), keyText: text, ...at };
  }

  /**
   * The entries of the flow collection whose opening bracket is at pos, up to its `close` bracket: `entry` reads
   * one entry (the separating commas and blanks are read here; a trailing comma is left to the library).
   */
  private entries(close: ']' | '}', entry: () => void): void {
    this.pos++; // [ or {
    this.skipSpaces();
    if (this.s[this.pos] === close) {
      this.pos++;
      return;
    }
    for (;;) {
      entry();
      this.skipSpaces();
      const c = this.s[this.pos++];
      if (c === close) return;
      if (c !== ',') throw new Unsupported('flow collection');
      this.skipSpaces();
      if (this.s[this.pos] === close) throw new Unsupported('trailing comma');
    }
  }

  seq(): SeqNode {
    const at = this.at();
    const items: YNode[] = [];
    this.entries(']', () => {
      const node = this.item();
      this.skipSpaces();
      if (this.s[this.pos] === ':') throw new Unsupported('flow pair in a list');
      items.push(node);
    });
    return { kind: 'seq', items, ...at };
  }

  map(): MapNode {
    const at = this.at();
    const items: { key: YNode; value: YNode | null }[] = [];
    this.entries('}', () => {
      const key = this.item();
      if (key.kind !== 'scalar') throw new Unsupported('flow key');
      this.skipSpaces();
      if (this.s[this.pos] !== ':') throw new Unsupported('flow key without value');
      this.pos++;
      this.skipSpaces();
      const c = this.s[this.pos];
      if (c === ',' || c === '}') throw new Unsupported('flow pair without value');
      items.push({ key, value: this.item() });
    });
    return { kind: 'map', items, ...at };
  }

  /** after the node: only blanks and a comment may follow */
  end(): void {
    const rest = this.s.slice(this.pos);
    if (rest.trim() !== '' && !/^\s+#/.test(rest)) throw new Unsupported('text after a flow node');
  }
}

/** "key:" or "key: value" at the start of `text`; undefined when the line is not a key. */
function splitKey(
  text: string,
  line: number,
  col: number,
): { key: ScalarNode; rest: string; restCol: number } | undefined {
  const c = text[0];
  if (c === '"' || c === "'") {
    const r = new FlowReader(text, 0, line, col);
    const key = r.quoted();
    if (text[r.pos] !== ':') return undefined;
    const after = text.slice(r.pos + 1);
    if (after !== '' && after[0] !== ' ') throw new Unsupported('quoted key');
    const rest = after.trimStart();
    return { key, rest, restCol: col + r.pos + 1 + (after.length - rest.length) };
  }
  let i = text.indexOf(': ');
  if (i < 0 && text.endsWith(':')) i = text.length - 1;
  if (i <= 0) return undefined;
  const keyText = text.slice(0, i);
  if (/^[-?:,[\]{}#&*!|>'"%@`]/.test(keyText) || keyText.includes(' #') || keyText !== keyText.trimEnd()) {
    throw new Unsupported('plain key');
  }
  if (keyText === '<<') throw new Unsupported('merge key');
  const after = text.slice(i + 1);
  const rest = after.trimStart();
  return {
    key: { kind: 'scalar', value: plainScalar(keyText), keyText, line, col },
    rest,
    restCol: col + i + 1 + (after.length - rest.length),
  };
}

class BlockReader {
  private pos = 0;
  constructor(private readonly lines: Line[]) {}

  private peek(): Line | undefined {
    return this.lines[this.pos];
  }

  done(): boolean {
    return this.pos >= this.lines.length;
  }

  /** the block whose first line is the next one, indented exactly `indent` */
  block(indent: number): MapNode | SeqNode {
    const first = this.peek();
    if (!first || first.indent !== indent) throw new Unsupported('indentation');
    return isItem(first.text) ? this.seq(indent) : this.map(indent);
  }

  private map(indent: number): MapNode {
    const first = this.peek()!;
    const items: { key: YNode; value: YNode | null }[] = [];
    for (let line = this.peek(); line && line.indent === indent; line = this.peek()) {
      if (isItem(line.text)) throw new Unsupported('list item in a map');
      const kv = splitKey(line.text, line.no, line.indent + 1);
      if (!kv) throw new Unsupported('not a key');
      this.pos++;
      items.push({ key: kv.key, value: this.value(kv.rest, kv.restCol, line, indent, true) });
    }
    const next = this.peek();
    if (next && next.indent > indent) throw new Unsupported('indentation');
    return { kind: 'map', items, line: first.no, col: first.indent + 1 };
  }

  private seq(indent: number): SeqNode {
    const first = this.peek()!;
    const items: (YNode | null)[] = [];
    for (let line = this.peek(); line && line.indent === indent; line = this.peek()) {
      if (!isItem(line.text)) break;
      let rest = line.text === '-' ? '' : line.text.slice(2).trimStart();
      if (rest.startsWith('#')) rest = '';
      const restIndent = line.indent + (line.text.length - rest.length);
      if (rest !== '' && (isItem(rest) || splitKey(rest, line.no, restIndent + 1))) {
        // a map or list starting on the item's line: read it as a block at its own column
        this.lines[this.pos] = { no: line.no, indent: restIndent, text: rest };
        items.push(this.block(restIndent));
        const next = this.peek();
        if (next && next.indent > indent && next.indent !== restIndent) throw new Unsupported('indentation');
      } else {
        this.pos++;
        items.push(this.value(rest, restIndent + 1, line, indent, false));
      }
    }
    return { kind: 'seq', items, line: first.no, col: first.indent + 1 };
  }

  /** the value after "key:" or "- ", starting at column `col` of `line` (or on the lines below) */
  private value(rest: string, col: number, line: Line, indent: number, inMap: boolean): YNode | null {
    if (rest.startsWith('#')) rest = '';
    if (rest === '') {
      const next = this.peek();
      if (next && next.indent > indent) return this.block(next.indent);
      // "key:" followed by a list at the same indentation
      if (inMap && next && next.indent === indent && isItem(next.text)) return this.seq(indent);
      return null;
    }
    const c = rest[0];
    if (c === '[' || c === '{' || c === '"' || c === "'") {
      const r = new FlowReader(rest, 0, line.no, col);
      const node = c === '[' ? r.seq() : c === '{' ? r.map() : r.quoted();
      r.end();
      this.noContinuation(indent);
      return node;
    }
    if (/^[&*!|>%@`?]/.test(rest) || rest.startsWith('- ') || rest === '-') throw new Unsupported(rest);
    const text = stripComment(rest);
    if (text.includes(': ') || text.endsWith(':')) throw new Unsupported('a map in a plain scalar');
    this.noContinuation(indent);
    return { kind: 'scalar', value: plainScalar(text), keyText: text, line: line.no, col };
  }

  /** a scalar's line may not be continued on a more indented line (a multi-line scalar: the library reads it) */
  private noContinuation(indent: number): void {
    const next = this.peek();
    if (next && next.indent > indent) throw new Unsupported('continued scalar');
  }
}

function isItem(text: string): boolean {
  return text === '-' || text.startsWith('- ');
}

/** Read a config file's documents; throws Unsupported for YAML this reader does not handle. */
export function readConfigYamlFast(text: string): YamlDocs {
  if (text.includes('\t') || text.includes('\r') || text.charCodeAt(0) === 0xfeff) {
    throw new Unsupported('tab, CR or BOM');
  }
  const docs: Line[][] = [[]];
  let explicit = false;
  const raw = text.split('\n');
  for (let i = 0; i < raw.length; i++) {
    const l = raw[i]!;
    const body = l.trimStart();
    if (body === '' || body.startsWith('#')) continue;
    if (l.startsWith('---')) {
      if (l !== '---') throw new Unsupported('content after ---');
      // a bare document before the first marker is a document only when it holds something
      if (docs.length === 1 && docs[0]!.length === 0 && !explicit) {
        explicit = true;
        continue;
      }
      docs.push([]);
      explicit = true;
      continue;
    }
    if (l === '...' || l.startsWith('... ') || l.startsWith('%'))
      throw new Unsupported('document end or directive');
    if (/[\x00-\x08\x0b-\x1f\x7f]/.test(l)) throw new Unsupported('control character');
    docs[docs.length - 1]!.push({ no: i + 1, indent: l.length - body.length, text: body.trimEnd() });
  }
  return docs.map((lines) => {
    if (lines.length === 0) return null;
    if (lines[0]!.indent !== 0) throw new Unsupported('indented document');
    const r = new BlockReader(lines);
    const node = r.block(0);
    if (!r.done()) throw new Unsupported('trailing content');
    return node;
  });
}
