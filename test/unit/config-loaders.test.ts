import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/config/errors.js';
import { loadHoconTree } from '../../src/config/hocon-loader.js';
import { formatLocation } from '../../src/config/source.js';
import { loadYamlTree } from '../../src/config/yaml-loader.js';
import { makeTree, removeTree } from '../fixtures/config-helpers.js';

const dirs: string[] = [];
async function tree(spec: Parameters<typeof makeTree>[0]): Promise<string> {
  const d = await makeTree(spec);
  dirs.push(d);
  return d;
}
afterAll(async () => {
  for (const d of dirs) await removeTree(d);
});
const show = (p: string) => p;

function thrown(f: () => unknown): ConfigError {
  try {
    f();
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error('expected a ConfigError');
}

async function thrownAsync(f: () => Promise<unknown>): Promise<ConfigError> {
  try {
    await f();
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error('expected a ConfigError');
}

describe('YAML config trees', () => {
  it('joins files with include (string or list), relative to the including file; own keys win', async () => {
    const d = await tree({
      'top.yaml':
        'include: parts/a.yaml\nx: top\nDims:\n  v:\n    "3.20": {include: [ver/base.yaml, ver/extra.yaml], own: 1}\n',
      'parts/a.yaml': 'x: a\ny: a\n',
      'ver/base.yaml': 'include: deeper/common.yaml\npackages: {a: true, b: true}\nlist: [1]\n',
      'ver/deeper/common.yaml': 'common: yes\n',
      'ver/extra.yaml': 'packages: {b: false}\nlist: [2]\n',
    });
    const { tree: t, files } = loadYamlTree(join(d, 'top.yaml'), show);
    expect(t).toEqual({
      x: 'top',
      y: 'a',
      Dims: { v: { '3.20': { common: 'yes', packages: { a: true, b: false }, list: [2], own: 1 } } },
    });
    expect(files).toHaveLength(5);
  });

  it('keeps keys as written (3.20 stays "3.20") and in document order', async () => {
    const d = await tree({ 't.yaml': 'b: 1\n3.20: x\na: 2\n010: y\ntrue: z\n' });
    const { tree: t } = loadYamlTree(join(d, 't.yaml'), show);
    expect(Object.keys(t)).toEqual(['b', '3.20', 'a', '010', 'true']);
  });

  it('layers documents: null in one, a new value in the next resets what an include brought', async () => {
    const d = await tree({
      'edge.yaml': 'include: base.yaml\nrepos: null\n---\nrepos: {edge: true}\n',
      'base.yaml': 'repos: {v3: true}\nother: 1\n',
    });
    expect(loadYamlTree(join(d, 'edge.yaml'), show).tree).toEqual({ repos: { edge: true }, other: 1 });
    const d2 = await tree({
      'plain.yaml': 'include: base.yaml\nrepos: {edge: true}\n',
      'base.yaml': 'repos: {v3: true}\n',
    });
    expect(loadYamlTree(join(d2, 'plain.yaml'), show).tree).toEqual({ repos: { v3: true, edge: true } });
  });

  it('merges anchors with <<', async () => {
    const d = await tree({ 't.yaml': 'base: &b {a: 1, b: 2}\nthing:\n  <<: *b\n  b: 3\n' });
    expect(loadYamlTree(join(d, 't.yaml'), show).tree).toEqual({
      base: { a: 1, b: 2 },
      thing: { a: 1, b: 3 },
    });
  });

  it('records file, line and column of every key', async () => {
    const d = await tree({
      't.yaml': 'A:\n  include: sub.yaml\n  own: 1\n',
      'sub.yaml': '# c\n\nfrom_sub:\n  deep: 2\n',
    });
    const { index } = loadYamlTree(join(d, 't.yaml'), show);
    expect(formatLocation(index.get(['A', 'own'])!)).toBe(`${join(d, 't.yaml')}:3:3`);
    expect(formatLocation(index.get(['A', 'from_sub', 'deep'])!)).toBe(`${join(d, 'sub.yaml')}:4:3`);
    expect(formatLocation(index.find(['A', 'from_sub', 'deep', 'nothing'])!)).toBe(
      `${join(d, 'sub.yaml')}:4:3`,
    );
  });

  it('a syntax error names file, line and column', async () => {
    const d = await tree({ 'top.yaml': 'include: bad.yaml\n', 'bad.yaml': 'a: 1\nb: [1, 2\nc: 3\n' });
    const err = thrown(() => loadYamlTree(join(d, 'top.yaml'), show));
    expect(err.message).toMatch(new RegExp(`^${join(d, 'bad.yaml')}:3:1: YAML syntax error: `));
    expect(err.details.location).toMatchObject({ line: 3, col: 1 });
  });

  it('a duplicate key is an error at its line', async () => {
    const d = await tree({ 't.yaml': 'a: 1\nb: 2\na: 3\n' });
    expect(thrown(() => loadYamlTree(join(d, 't.yaml'), show)).message).toMatch(
      /t\.yaml:3:1: YAML syntax error: Map keys must be unique/,
    );
  });

  it('a missing include names the including file and line', async () => {
    const d = await tree({ 'top.yaml': 'Dims:\n  v:\n    x: {include: nope/missing.yaml}\n' });
    const err = thrown(() => loadYamlTree(join(d, 'top.yaml'), show));
    expect(err.message).toBe(
      `${join(d, 'top.yaml')}:3:18: include "nope/missing.yaml": file not found (${join(d, 'nope/missing.yaml')})`,
    );
  });

  it('an include cycle is an error naming the chain', async () => {
    const d = await tree({ 'a.yaml': 'include: b.yaml\n', 'b.yaml': 'include: a.yaml\n' });
    expect(thrown(() => loadYamlTree(join(d, 'a.yaml'), show)).message).toMatch(
      /include cycle: .*a\.yaml -> .*b\.yaml -> .*a\.yaml/,
    );
  });

  it('rejects includes that are not file names, non-mapping files and __proto__ keys', async () => {
    const d = await tree({
      'num.yaml': 'include: 3\n',
      'list.yaml': '- a\n- b\n',
      'inclist.yaml': 'include: list.yaml\n',
      'proto.yaml': '__proto__: {polluted: true}\n',
    });
    expect(thrown(() => loadYamlTree(join(d, 'num.yaml'), show)).message).toMatch(
      /num\.yaml:1:10: include: expected a file name/,
    );
    expect(thrown(() => loadYamlTree(join(d, 'list.yaml'), show)).message).toMatch(
      /list\.yaml:1:1: expected a mapping/,
    );
    expect(thrown(() => loadYamlTree(join(d, 'inclist.yaml'), show)).message).toMatch(
      /list\.yaml:1:1: expected a mapping/,
    );
    expect(thrown(() => loadYamlTree(join(d, 'proto.yaml'), show)).message).toMatch(
      /"__proto__" is not allowed/,
    );
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('an empty file is an empty mapping', async () => {
    const d = await tree({ 'top.yaml': 'include: empty.yaml\na: 1\n', 'empty.yaml': '# nothing\n' });
    expect(loadYamlTree(join(d, 'top.yaml'), show).tree).toEqual({ a: 1 });
  });
});

describe('HOCON config trees', () => {
  it('keeps document order, quoted keys, substitutions, null resets and strict values', async () => {
    const d = await tree({
      'top.conf': [
        'project = base',
        'Default {',
        // biome-ignore lint/suspicious/noTemplateCurlyInString: a HOCON substitution
        '  project = ${project}',
        '  mode = 0755',
        '  hex = 0x10',
        '}',
        'Dims {',
        '  version {',
        '    "3.20" { include required("v/3.20.conf") }',
        '    edge   { include required("v/edge.conf") }',
        '    "3.9"  {}',
        '  }',
        '  zeta {}',
        '  alpha {}',
        '}',
        'project = override',
        '',
      ].join('\n'),
      'v/3.20.conf': 'include required("base.conf")\n',
      'v/edge.conf': 'include required("base.conf")\nrepos = null\nrepos { edge = true }\nlist = [3]\n',
      'v/base.conf': 'repos { v = true }\nlist = [1, 2]\nkernel_modules.ena = true\n',
    });
    const { tree: t } = await loadHoconTree(join(d, 'top.conf'), show);
    expect(Object.keys(t)).toEqual(['project', 'Default', 'Dims']);
    expect(t.Default).toEqual({ project: 'override', mode: '0755', hex: '0x10' });
    const dims = t.Dims as Record<string, Record<string, unknown>>;
    expect(Object.keys(dims)).toEqual(['version', 'zeta', 'alpha']);
    expect(Object.keys(dims.version!)).toEqual(['3.20', 'edge', '3.9']);
    expect(dims.version!['3.20']).toEqual({
      repos: { v: true },
      list: [1, 2],
      kernel_modules: { ena: true },
    });
    expect(dims.version!.edge).toEqual({ repos: { edge: true }, list: [3], kernel_modules: { ena: true } });
  });

  it('records file, line and column of every key, through includes', async () => {
    const d = await tree({
      'top.conf': 'A {\n  include required("sub.conf")\n  own = 1\n}\n',
      'sub.conf': '# comment\nfrom_sub.deep = 2\n',
    });
    const { index, files } = await loadHoconTree(join(d, 'top.conf'), show);
    expect(formatLocation(index.get(['A', 'own'])!)).toBe(`${join(d, 'top.conf')}:3:3`);
    expect(formatLocation(index.get(['A', 'from_sub', 'deep'])!)).toBe(`${join(d, 'sub.conf')}:2:1`);
    expect([...files].sort()).toEqual([join(d, 'sub.conf'), join(d, 'top.conf')]);
  });

  it('a syntax error names file, line and column (also inside an included file)', async () => {
    const d = await tree({
      'top.conf': 'a = 1\ninclude required("bad.conf")\n',
      'bad.conf': 'x {\n  y = [1, 2\n}\n',
      'plus.conf': 'a = 1 +\n',
    });
    const err = await thrownAsync(() => loadHoconTree(join(d, 'top.conf'), show));
    expect(err.message).toBe(`${join(d, 'bad.conf')}:3:1: HOCON error: Unexpected token.`);
    const err2 = await thrownAsync(() => loadHoconTree(join(d, 'plus.conf'), show));
    expect(err2.message).toBe(`${join(d, 'plus.conf')}:1:7: HOCON error: Plus sign should be quoted.`);
  });

  it('a missing include names the including file and line', async () => {
    const d = await tree({ 'top.conf': 'x {\n  include required("nope/missing.conf")\n}\n' });
    const err = await thrownAsync(() => loadHoconTree(join(d, 'top.conf'), show));
    expect(err.message).toBe(
      `${join(d, 'top.conf')}:2:11: include "nope/missing.conf": file not found (${join(d, 'nope/missing.conf')})`,
    );
  });

  it('an unresolvable substitution names where it is', async () => {
    // biome-ignore lint/suspicious/noTemplateCurlyInString: a HOCON substitution
    const d = await tree({ 'top.conf': 'a = 1\nb = ${nope_not_set_anywhere}\n' });
    const err = await thrownAsync(() => loadHoconTree(join(d, 'top.conf'), show));
    expect(err.message).toMatch(
      new RegExp(`^${join(d, 'top.conf')}:2:5: HOCON error: Unable to resolve 'nope_not_set_anywhere'`),
    );
  });
});
