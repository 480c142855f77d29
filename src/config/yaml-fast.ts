// A fast writer and reader for work/images.yaml.
//
// images.yaml holds a few hundred variants (about 0.5 MB) and is written after every step; the general YAML
// library takes hundreds of milliseconds for each write and read of it. The writer here emits block YAML that
// every YAML 1.1 and 1.2 reader reads the same way (strings that could be taken for numbers, booleans, null or
// dates are quoted). The reader understands exactly that subset (what the writer emits, and the plain block
// style other tools write); for anything else it reports Unsupported, and the caller uses the general library.

export class Unsupported extends Error {}

const RESERVED_PLAIN = new Set([
  '',
  '~',
  'null',
  'Null',
  'NULL',
  'true',
  'True',
  'TRUE',
  'false',
  'False',
  'FALSE',
  'y',
  'Y',
  'yes',
  'Yes',
  'YES',
  'n',
  'N',
  'no',
  'No',
  'NO',
  'on',
  'On',
  'ON',
  'off',
  'Off',
  'OFF',
  '<<',
  '=',
]);

/** May `s` be written unquoted, meaning the same string to YAML 1.1 and 1.2 readers? */
export function isPlainSafe(s: string): boolean {
  if (RESERVED_PLAIN.has(s)) return false;
  // indicators, digits and signs at the start (numbers, dates, times, octal, sexagesimal, .inf, .nan)
  if (/^[-?:,[\]{}#&*!|>'"%@`+.0-9\s]/.test(s)) return false;
  if (/\s$/.test(s) || s.includes(': ') || s.includes(' #') || s.endsWith(':')) return false;
  // control characters, and anything outside printable ASCII stays quoted (escaped)
  return /^[\x20-\x7e]*$/.test(s);
}

function quote(s: string): string {
  return JSON.stringify(s);
}

function scalarText(v: unknown): string {
  if (v === null || v === undefined) return 'null';
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (typeof v === 'number') {
    if (Number.isNaN(v)) return '.nan';
    if (!Number.isFinite(v)) return v > 0 ? '.inf' : '-.inf';
    return String(v);
  }
  if (typeof v === 'bigint') return String(v);
  const s = String(v);
  return isPlainSafe(s) ? s : quote(s);
}

/** A literal block (|, |-) when it reads back exactly, else undefined. */
function literalBlock(s: string, indent: string): string | undefined {
  if (!s.includes('\n') || s.includes('\r') || /[\x00-\x08\x0b-\x1f\x7f]/.test(s)) return undefined;
  let body = s;
  let chomp = '-';
  if (s.endsWith('\n')) {
    if (s.endsWith('\n\n')) return undefined;
    body = s.slice(0, -1);
    chomp = '';
  }
  const lines = body.split('\n');
  if (!lines[0] || /^[ \t]/.test(lines[0])) return undefined;
  if (lines.some((l) => l !== '' && l.trim() === '')) return undefined;
  if (lines.some((l) => /[ \t]$/.test(l))) return undefined;
  return `|${chomp}\n${lines.map((l) => (l === '' ? '' : `${indent}${l}`)).join('\n')}`;
}

function isMap(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

function isBlock(v: unknown): boolean {
  if (Array.isArray(v)) return v.length > 0;
  if (!isMap(v)) return false;
  for (const k in v) if (v[k] !== undefined) return true;
  return false;
}

/** One emitYaml call; remembers how each string is written (keys and values repeat across variants). */
class Emitter {
  private readonly text = new Map<string, string>();
  private readonly multiline = new Map<string, string>();
  readonly out: string[] = [];
  private readonly edit: (s: string) => string;

  constructor(edit: (s: string) => string) {
    this.edit = edit;
  }

  private scalar(v: unknown): string {
    if (v instanceof Date) return scalarText(this.edit(v.toISOString()));
    if (typeof v !== 'string') return scalarText(v);
    let t = this.text.get(v);
    if (t === undefined) {
      t = scalarText(this.edit(v));
      this.text.set(v, t);
    }
    return t;
  }

  private inline(v: unknown, indent: string): string {
    if (Array.isArray(v)) return '[]';
    if (isMap(v)) return '{}';
    if (typeof v === 'string' && v.includes('\n')) {
      // multi-line values (scripts, motd) repeat in every variant, at the same indentation
      const key = `${indent}\0${v}`;
      let t = this.multiline.get(key);
      if (t === undefined) {
        const e = this.edit(v);
        t = literalBlock(e, indent) ?? scalarText(e);
        this.multiline.set(key, t);
      }
      return t;
    }
    return this.scalar(v);
  }

  /** a non-empty map or list, on its own lines */
  block(v: unknown, indent: string): void {
    const out = this.out;
    const inner = `${indent}  `;
    if (Array.isArray(v)) {
      for (const item of v) {
        if (isBlock(item)) {
          // the item's first line goes after "- "
          const at = out.length;
          this.block(item, inner);
          out[at] = `${indent}- ${out[at]!.slice(inner.length)}`;
        } else {
          out.push(`${indent}- ${this.inline(item, inner)}`);
        }
      }
      return;
    }
    const m = v as Record<string, unknown>;
    for (const k of Object.keys(m)) {
      const val = m[k];
      // like JSON and the YAML library: a key whose value is undefined is left out
      if (val === undefined) continue;
      if (isBlock(val)) {
        out.push(`${indent}${this.scalar(k)}:`);
        this.block(val, inner);
      } else {
        out.push(`${indent}${this.scalar(k)}: ${this.inline(val, inner)}`);
      }
    }
  }
}

/**
 * YAML text of a map (a document starting with ---). `edit` is applied to every string (keys and values) before
 * it is written, once per distinct string (images.yaml redacts URLs with it).
 */
export function emitYaml(data: Record<string, unknown>, edit: (s: string) => string = (s) => s): string {
  if (!isBlock(data)) return '--- {}\n';
  const e = new Emitter(edit);
  e.out.push('---');
  e.block(data, '');
  return `${e.out.join('\n')}\n`;
}

// ---------------------------------------------------------------- reader

interface Line {
  indent: number;
  text: string;
  no: number;
}

function plainValue(s: string): unknown {
  if (s === '~' || s === 'null' || s === 'Null' || s === 'NULL') return null;
  if (s === 'true' || s === 'True' || s === 'TRUE') return true;
  if (s === 'false' || s === 'False' || s === 'FALSE') return false;
  if (/^[-+]?\d+$/.test(s)) return Number(s);
  if (/^[-+]?(\d+\.\d*|\.\d+|\d+)([eE][-+]?\d+)?$/.test(s)) return Number(s);
  if (/^[-+]?\.(inf|Inf|INF)$/.test(s)) return s.startsWith('-') ? -Infinity : Infinity;
  if (/^\.(nan|NaN|NAN)$/.test(s)) return Number.NaN;
  // forms the core schema reads as numbers (0x.., 0o..), and anything a comment or indicator could hide in
  if (
    /^0[xo]/.test(s) ||
    /^([?:,[\]{}#&*!|>'"%@`]|-(\s|$))/.test(s) ||
    s.includes(' #') ||
    s.includes(': ')
  ) {
    throw new Unsupported(s);
  }
  return s;
}

function scalarValue(s: string): unknown {
  if (s.startsWith('"')) {
    if (!s.endsWith('"') || s.length < 2) throw new Unsupported(s);
    try {
      return JSON.parse(s);
    } catch {
      throw new Unsupported(s);
    }
  }
  if (s === '{}') return {};
  if (s === '[]') return [];
  return plainValue(s);
}

function keyOf(text: string): { key: string; rest: string } {
  if (text.startsWith('"')) {
    const m = /^("(?:[^"\\]|\\.)*")(:(?: |$))/.exec(text);
    if (!m) throw new Unsupported(text);
    return { key: JSON.parse(m[1]!) as string, rest: text.slice(m[0].length).trim() };
  }
  const i = text.indexOf(': ');
  const key = i >= 0 ? text.slice(0, i) : text.endsWith(':') ? text.slice(0, -1) : undefined;
  if (key === undefined || key === '' || /^[-?,[\]{}#&*!|>'%@`]/.test(key) || key.includes(' #')) {
    throw new Unsupported(text);
  }
  return { key, rest: i >= 0 ? text.slice(i + 2).trim() : '' };
}

class Reader {
  private readonly lines: Line[];
  private pos = 0;
  constructor(lines: Line[]) {
    this.lines = lines;
  }

  private peek(): Line | undefined {
    return this.lines[this.pos];
  }

  /** a block (map or list) whose lines are indented exactly `indent` */
  block(indent: number): unknown {
    const first = this.peek();
    if (!first || first.indent !== indent) throw new Unsupported('block');
    return first.text === '-' || first.text.startsWith('- ') ? this.list(indent) : this.map(indent);
  }

  private map(indent: number): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (let line = this.peek(); line && line.indent === indent; line = this.peek()) {
      if (line.text === '-' || line.text.startsWith('- ')) throw new Unsupported('list in map');
      this.pos++;
      const { key, rest } = keyOf(line.text);
      if (key === '__proto__' || Object.hasOwn(out, key)) throw new Unsupported(key);
      out[key] = this.value(rest, indent, true);
    }
    const next = this.peek();
    if (next && next.indent > indent) throw new Unsupported('indentation');
    return out;
  }

  private list(indent: number): unknown[] {
    const out: unknown[] = [];
    for (let line = this.peek(); line && line.indent === indent; line = this.peek()) {
      if (!(line.text === '-' || line.text.startsWith('- '))) break;
      const rest = line.text === '-' ? '' : line.text.slice(2);
      if (rest.startsWith('- ') || rest === '-' || /^("(?:[^"\\]|\\.)*"|[^"\s][^:]*?):( |$)/.test(rest)) {
        // a nested list or map starting on this line: re-read it as a block two columns further in
        this.lines[this.pos] = { indent: indent + 2, text: rest, no: line.no };
        out.push(this.block(indent + 2));
      } else {
        this.pos++;
        out.push(this.value(rest, indent, false));
      }
    }
    return out;
  }

  /** the value after "key:" or "- " */
  private value(rest: string, indent: number, inMap: boolean): unknown {
    if (rest === '|' || rest === '|-') return this.literal(indent, rest === '|-');
    if (rest !== '') return scalarValue(rest);
    const next = this.peek();
    if (next && next.indent > indent) return this.block(next.indent);
    // "key:" followed by a list at the same indentation (PyYAML's default style)
    if (inMap && next && next.indent === indent && (next.text === '-' || next.text.startsWith('- '))) {
      return this.list(indent);
    }
    return null;
  }

  private literal(indent: number, strip: boolean): string {
    const body: string[] = [];
    let blockIndent = -1;
    for (let line = this.peek(); line; line = this.peek()) {
      if (line.text === '') {
        body.push('');
        this.pos++;
        continue;
      }
      if (line.indent <= indent) break;
      if (blockIndent < 0) blockIndent = line.indent;
      if (line.indent < blockIndent) throw new Unsupported('literal indentation');
      body.push(' '.repeat(line.indent - blockIndent) + line.text);
      this.pos++;
    }
    // blank lines at the end belong to the chomping, not the content
    let trailing = 0;
    while (body.length > 0 && body[body.length - 1] === '') {
      body.pop();
      trailing++;
    }
    if (trailing > 0 && !strip) throw new Unsupported('literal with trailing blank lines');
    const text = body.join('\n');
    return strip ? text : `${text}\n`;
  }

  done(): boolean {
    return this.pos >= this.lines.length;
  }
}

/** Read YAML text written by emitYaml (or in the same plain block style); throws Unsupported otherwise. */
export function readYamlFast(text: string): unknown {
  const raw = text.split('\n');
  const lines: Line[] = [];
  let started = false;
  for (let i = 0; i < raw.length; i++) {
    const l = raw[i]!;
    if (l.includes('\t') || l.includes('\r')) throw new Unsupported('tab or CR');
    if (!started && (l === '---' || l.startsWith('--- '))) {
      started = true;
      if (l === '--- {}') return {};
      if (l !== '---') throw new Unsupported('content on the document start line');
      continue;
    }
    started = true;
    if (l.trim() === '') {
      lines.push({ indent: 0, text: '', no: i + 1 });
      continue;
    }
    const text = l.trimStart();
    if (l === '---' || l === '...' || l.startsWith('%'))
      throw new Unsupported('document marker or directive');
    if (/\s$/.test(l)) throw new Unsupported('trailing space');
    lines.push({ indent: l.length - text.length, text, no: i + 1 });
  }
  // blank lines are kept only where literal blocks need them; drop them at the very end
  while (lines.length > 0 && lines[lines.length - 1]!.text === '') lines.pop();
  if (lines.length === 0) return null;
  if (lines.some((l, i) => l.text === '' && lines[i + 1] && lines[i + 1]!.indent === 0)) {
    throw new Unsupported('blank line at top level');
  }
  const r = new Reader(lines);
  const value = r.block(0);
  if (!r.done()) throw new Unsupported('trailing content');
  return value;
}
