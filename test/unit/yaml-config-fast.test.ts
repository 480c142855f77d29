// The fast config reader against the YAML library: wherever the fast reader takes a text, it must give exactly
// the library's nodes (kinds, values, key texts, lines and columns); everything else it must leave to the
// library (Unsupported). Checked on every YAML file of the repository's config trees and overlays, on hand-written
// corner cases, and on generated documents.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { type Document, LineCounter, parseAllDocuments } from 'yaml';
import { readConfigYamlFast } from '../../src/config/yaml-config-fast.js';
import { Unsupported } from '../../src/config/yaml-fast.js';
import { fromLibrary, type YamlDocs, type YNode } from '../../src/config/yaml-nodes.js';

const ROOT = join(import.meta.dirname, '..', '..');

function plain(n: YNode | null): unknown {
  if (n === null) return null;
  const at = `${n.line}:${n.col}`;
  switch (n.kind) {
    case 'scalar':
      return { at, value: n.value, key: n.keyText };
    case 'map':
      return { at, map: n.items.map((p) => [plain(p.key), plain(p.value)]) };
    case 'seq':
      return { at, seq: n.items.map(plain) };
    default:
      return { at, kind: n.kind };
  }
}

/** the library's reading, or undefined when it reports an error */
function library(text: string): unknown {
  const lc = new LineCounter();
  const docs: Document.Parsed[] = [
    ...parseAllDocuments(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: false }),
  ];
  if (docs.some((d) => d.errors.length > 0)) return undefined;
  return documents(fromLibrary(docs, lc));
}

/** the documents as compared: empty ones (no node, or a lone null) are left out, as the loader skips them */
function documents(docs: YamlDocs): unknown[] {
  return docs.filter((d) => d !== null && !(d.kind === 'scalar' && d.value === null)).map(plain);
}

/** the fast reading, or 'unsupported' */
function fast(text: string): unknown {
  let docs: YamlDocs;
  try {
    docs = readConfigYamlFast(text);
  } catch (err) {
    if (err instanceof Unsupported) return 'unsupported';
    throw err;
  }
  return documents(docs);
}

function yamlFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...yamlFiles(p));
    else if (name.endsWith('.yaml') || name.endsWith('.yml')) out.push(p);
  }
  return out;
}

describe('the fast config reader', () => {
  const files = [
    ...yamlFiles(join(ROOT, 'configs')),
    ...yamlFiles(join(ROOT, 'overlays')),
    ...yamlFiles(join(ROOT, 'test', 'fixtures')),
  ];

  it('reads every file of the official config tree itself (the fast path is the one a run takes)', () => {
    const official = yamlFiles(join(ROOT, 'configs'));
    expect(official.length).toBeGreaterThan(20);
    const left = official.filter((f) => fast(readFileSync(f, 'utf8')) === 'unsupported');
    expect(left.map((f) => relative(ROOT, f))).toEqual([]);
  });

  it.each(files.map((f) => [relative(ROOT, f), f]))('%s: the same nodes as the library', (_name, file) => {
    const text = readFileSync(file, 'utf8');
    const f = fast(text);
    if (f === 'unsupported') return;
    expect(f).toEqual(library(text));
  });

  const cases: [string, string][] = [
    [
      'comments everywhere',
      'a: 1 # one\n# whole line\nb:  # empty\n  - x # item\n  -  y\n\nc: "q # not a comment"\n',
    ],
    [
      'quoted keys and values',
      "\"3.20\": {include: version/3.20.yaml}\n'it''s': 'a ''b'''\nk: \"t\\u00e9\\n\"\n",
    ],
    [
      'numbers and words',
      'a: 2\nb: -7\nc: 3.5\nd: 3.24.1\ne: .5\nf: 1.\ng: +3\nh: 007\ni: 12345678901234567890\nj: 1_000\n',
    ],
    ['null and booleans', 'a: ~\nb: null\nc: NULL\nd: true\ne: False\nf: yes\ng: no\nh: on\n'],
    [
      'flow collections',
      'a: []\nb: {}\nc: [x, "y", \'z\', 1, [2, 3], {k: v}]\nd: {a: 1, b: [x], "c d": e}\n',
    ],
    ['lists in maps at the same indentation', 'a:\n- x\n- y\nb:\n  - z\n'],
    ['maps in lists', 'l:\n  - a: 1\n    b: 2\n  - c: 3\n  -\n    d: 4\n  - - n1\n    - n2\n'],
    ['several documents', 'a: 1\n---\na: 2\n---\n'],
    ['a leading marker', '# head\n---\na: 1\n'],
    ['two markers', '---\n---\na: 1\n'],
    ['URLs and colons', 'u: https://x.example/a:b\nk: a:b\nt: "x: y"\n'],
    ['plain text with spaces', 'name: Amazon Web Services\nmsg: hello, world [ok]\n'],
    ['deep nesting', 'a:\n  b:\n    c:\n      d: [e]\n      f: g\n    h: i\n'],
    // left to the library
    ['anchors and aliases', 'a: &x {b: 1}\nc: *x\n'],
    ['merge keys', 'a: &x {b: 1}\nc:\n  <<: *x\n'],
    ['block scalars', 'a: |\n  text\n'],
    ['multi-line plain scalars', 'a: one\n  two\n'],
    ['multi-line flow', 'a: [x,\n  y]\n'],
    ['tags', 'a: !!str 1\n'],
    ['tabs', 'a:\n\tb: 1\n'],
    ['hex and exponents', 'a: 0x10\nb: 1e3\nc: .inf\n'],
    ['document end', 'a: 1\n...\n'],
    ['odd indentation', 'a:\n    b: 1\n  c: 2\n'],
    ['a key with a space before the colon', 'a : 1\n'],
    ['duplicate keys', 'a: 1\na: 2\n'],
    ['a top-level list', '- a\n- b\n'],
    ['a top-level scalar', 'just text\n'],
    ['an empty file', ''],
    ['comments only', '# nothing\n'],
  ];
  it.each(cases)('%s: the library’s nodes or Unsupported', (_name, text) => {
    const f = fast(text);
    const l = library(text);
    if (f === 'unsupported') return;
    expect(l).toBeDefined();
    expect(f).toEqual(l);
  });

  it('takes the plain forms itself (the corner cases above that configs use)', () => {
    for (const [name, text] of cases.slice(0, 13)) {
      expect(fast(text), name).not.toBe('unsupported');
    }
  });

  it('generated documents: the same nodes as the library, or Unsupported', () => {
    // a small deterministic generator of block-style trees (xorshift32)
    let seed = 0x2545f491;
    const rnd = (n: number) => {
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return (seed >>> 0) % n;
    };
    const words = [
      'a',
      'b-c',
      'x_y',
      '3.20',
      'edge',
      '128',
      '-1',
      '2.5',
      'true',
      'null',
      '~',
      'x y',
      'http://h/p',
      'a:b',
      '-cpu',
      'a#b',
      'k: v',
      "it's",
      'é',
    ];
    const scalar = () => {
      const w = words[rnd(words.length)]!;
      const style = rnd(4);
      if (style === 0) return JSON.stringify(w);
      if (style === 1) return `'${w}'`;
      return w.includes(': ') || w === '' ? JSON.stringify(w) : w;
    };
    const flow = (d: number): string => {
      const r = rnd(d > 1 ? 3 : 5);
      if (r === 0) return `[${Array.from({ length: rnd(3) }, () => flow(d + 1)).join(', ')}]`;
      if (r === 1) return `{${Array.from({ length: rnd(3) }, (_, i) => `k${i}: ${flow(d + 1)}`).join(', ')}}`;
      return scalar();
    };
    const block = (indent: string, d: number): string[] => {
      const lines: string[] = [];
      const n = 1 + rnd(3);
      const list = rnd(3) === 0;
      for (let i = 0; i < n; i++) {
        const head = list ? `${indent}- ` : `${indent}${i === 1 ? '"q k"' : `k${i}`}:`;
        const r = d > 2 ? rnd(2) : rnd(4);
        if (r === 0) lines.push(`${head}${list ? '' : ' '}${scalar()}${rnd(4) === 0 ? ' # c' : ''}`);
        else if (r === 1) lines.push(`${head}${list ? '' : ' '}${flow(0)}`);
        else {
          lines.push(head.trimEnd());
          lines.push(...block(`${indent}  `, d + 1));
        }
        if (rnd(5) === 0) lines.push(`${indent}# comment`);
      }
      return lines;
    };
    let taken = 0;
    for (let i = 0; i < 400; i++) {
      const docs = Array.from({ length: 1 + rnd(2) }, () => block('', 0).join('\n'));
      const text = `${docs.join('\n---\n')}\n`;
      const f = fast(text);
      if (f === 'unsupported') continue;
      taken++;
      expect(f, text).toEqual(library(text));
    }
    // most generated documents are in the plain style the fast reader takes
    expect(taken).toBeGreaterThan(200);
  });
});
