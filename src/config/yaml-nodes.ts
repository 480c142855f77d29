// The YAML of config files as the config loader reads it: maps, lists and scalars with the line and column
// where each starts, and aliases pointing at what they name. Two readers make it: a fast one for the plain block
// style config trees are written in (yaml-config-fast.ts), and the YAML library for everything else (below).
import {
  type Document,
  isAlias,
  isMap,
  isScalar,
  isSeq,
  type LineCounter,
  Scalar,
  type Node as YamlNode,
} from 'yaml';

export interface NodePos {
  /** 1-based, as editors count */
  readonly line: number;
  readonly col: number;
}

export interface ScalarNode extends NodePos {
  readonly kind: 'scalar';
  readonly value: unknown;
  /** the key this scalar makes: a plain scalar's text as written (`3.20:` is "3.20"), else its value as text */
  readonly keyText: string | undefined;
}

export interface MapNode extends NodePos {
  readonly kind: 'map';
  readonly items: readonly { readonly key: YNode | null; readonly value: YNode | null }[];
}

export interface SeqNode extends NodePos {
  readonly kind: 'seq';
  readonly items: readonly (YNode | null)[];
}

export interface AliasNode extends NodePos {
  readonly kind: 'alias';
  readonly name: string;
  /** undefined: the anchor it names does not exist */
  readonly target: () => YNode | null | undefined;
}

/** A node that is none of the above (a YAML feature the loader refuses). */
export interface OtherNode extends NodePos {
  readonly kind: 'other';
}

export type YNode = ScalarNode | MapNode | SeqNode | AliasNode | OtherNode;

/** The documents of a file: each one's top-level node (null: an empty document). */
export type YamlDocs = readonly (YNode | null)[];

/** The nodes of documents the YAML library parsed (aliases resolved when the loader reaches them). */
export function fromLibrary(docs: readonly Document.Parsed[], lc: LineCounter): YamlDocs {
  return docs.map((doc) => {
    const seen = new Map<unknown, YNode>();
    const pos = (n: unknown): NodePos => {
      const offset = (n as YamlNode | null)?.range?.[0];
      if (offset === undefined) return { line: 0, col: 0 };
      const p = lc.linePos(offset);
      return { line: p.line, col: p.col };
    };
    const convert = (n: unknown): YNode | null => {
      if (n === null || n === undefined) return null;
      const known = seen.get(n);
      if (known) return known;
      let out: YNode;
      if (isScalar(n)) {
        const keyText =
          n.type === Scalar.PLAIN && typeof n.source === 'string' && n.source !== ''
            ? n.source
            : n.value === null
              ? undefined
              : String(n.value);
        out = { kind: 'scalar', value: n.value, keyText, ...pos(n) };
      } else if (isMap(n)) {
        const items: { key: YNode | null; value: YNode | null }[] = [];
        out = { kind: 'map', items, ...pos(n) };
        seen.set(n, out);
        for (const pair of n.items) items.push({ key: convert(pair.key), value: convert(pair.value) });
      } else if (isSeq(n)) {
        const items: (YNode | null)[] = [];
        out = { kind: 'seq', items, ...pos(n) };
        seen.set(n, out);
        for (const item of n.items) items.push(convert(item));
      } else if (isAlias(n)) {
        out = { kind: 'alias', name: n.source, target: () => convert(n.resolve(doc)), ...pos(n) };
      } else {
        out = { kind: 'other', ...pos(n) };
      }
      seen.set(n, out);
      return out;
    };
    return convert(doc.contents);
  });
}
