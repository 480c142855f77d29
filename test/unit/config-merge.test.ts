import { describe, expect, it } from 'vitest';
import { formatTemplate, PlaceholderError } from '../../src/config/format.js';
import { deepClone, getPath, mergeAdditive, mergeOverride } from '../../src/config/merge.js';

describe('mergeAdditive (a layer into a variant)', () => {
  it('overrides scalars, keeping the key in place', () => {
    const t = { a: 1, b: 'x', c: true };
    mergeAdditive(t, { b: 'y' });
    expect(t).toEqual({ a: 1, b: 'y', c: true });
    expect(Object.keys(t)).toEqual(['a', 'b', 'c']);
  });

  it('appends arrays', () => {
    const t = { name: ['{cloud}_alpine'], disk_size: [128] };
    mergeAdditive(t, { name: ['3.22.1'], disk_size: [32] });
    mergeAdditive(t, { name: ['r{revision}'] });
    expect(t).toEqual({ name: ['{cloud}_alpine', '3.22.1', 'r{revision}'], disk_size: [128, 32] });
  });

  it('merges maps recursively and adds new keys at the end', () => {
    const t = { packages: { a: true, b: true }, services: { boot: { x: true } } };
    mergeAdditive(t, {
      packages: { b: false, c: '--no-scripts' },
      services: { boot: { y: true }, default: { z: true } },
    });
    expect(t).toEqual({
      packages: { a: true, b: false, c: '--no-scripts' },
      services: { boot: { x: true, y: true }, default: { z: true } },
    });
    expect(Object.keys(t.packages)).toEqual(['a', 'b', 'c']);
  });

  it('null resets a key; the layers after it start afresh', () => {
    const t: Record<string, unknown> = { repos: { old: true }, list: [1, 2] };
    mergeAdditive(t, { repos: null, list: null });
    expect(t).toEqual({ repos: null, list: null });
    mergeAdditive(t, { repos: { new: true }, list: [3] });
    expect(t).toEqual({ repos: { new: true }, list: [3] });
  });

  it('a change of type replaces', () => {
    const t: Record<string, unknown> = { a: [1], b: { x: 1 }, c: 'text' };
    mergeAdditive(t, { a: { k: 1 }, b: [2], c: [3] });
    expect(t).toEqual({ a: { k: 1 }, b: [2], c: [3] });
  });

  it('copies what it takes, so a layer can be merged into many variants', () => {
    const layer = { packages: { a: true }, list: [{ x: 1 }] };
    const t1: Record<string, unknown> = {};
    const t2: Record<string, unknown> = {};
    mergeAdditive(t1, layer);
    mergeAdditive(t2, layer);
    (t1.packages as Record<string, unknown>).b = true;
    ((t1.list as unknown[])[0] as Record<string, number>).x = 9;
    expect(layer).toEqual({ packages: { a: true }, list: [{ x: 1 }] });
    expect(t2).toEqual({ packages: { a: true }, list: [{ x: 1 }] });
  });
});

describe('mergeOverride (building the config tree, as HOCON does)', () => {
  it('merges objects but replaces arrays, scalars and null', () => {
    const base = { Default: { name: ['a'], motd: { x: 'x' }, size: 1 }, keep: true };
    const over = { Default: { name: ['b'], motd: { y: 'y' }, size: null } };
    expect(mergeOverride(base, over)).toEqual({
      Default: { name: ['b'], motd: { x: 'x', y: 'y' }, size: null },
      keep: true,
    });
    expect(base.Default.name).toEqual(['a']);
  });

  it('an object after null does not bring back what null removed', () => {
    const step1 = mergeOverride({ repos: { a: true } }, { repos: null });
    expect(mergeOverride(step1, { repos: { b: true } })).toEqual({ repos: { b: true } });
  });
});

describe('deepClone / getPath', () => {
  it('clones nested data and finds paths', () => {
    const v = { a: { b: [1, { c: 2 }] } };
    const c = deepClone(v);
    expect(c).toEqual(v);
    expect(c.a).not.toBe(v.a);
    expect(getPath(v, ['a', 'b'])).toEqual([1, { c: 2 }]);
    expect(getPath(v, ['a', 'x'])).toBeUndefined();
    expect(getPath(v, ['a', 'b', 'c'])).toBeUndefined();
  });
});

describe('formatTemplate (Python str.format placeholders)', () => {
  it('fills names, keeps {{ }} as braces and prints None/True/False', () => {
    expect(
      formatTemplate('{a}-{b} {{literal}} {n} {t} {f}', { a: 'x', b: 3, n: null, t: true, f: false }),
    ).toBe('x-3 {literal} None True False');
  });

  it('fails on unknown names and on lists or maps', () => {
    expect(() => formatTemplate('{nope}', {})).toThrow(PlaceholderError);
    expect(() => formatTemplate('{nope}', {})).toThrow('placeholder {nope} is unknown');
    expect(() => formatTemplate('{l}', { l: [1] })).toThrow('is a list or map');
  });
});
