// The layer rule (docs/architecture.md "Layers"): a module imports only from its own layer or the layers below
// it, and the shared vocabulary at the bottom imports only itself. Every import of every src/**/*.ts file is
// checked: static, type-only, re-exports and dynamic import().
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/**
 * Top to bottom. The orchestration is on top (the CLI, then the pipeline of steps), the step implementations
 * below it, then the cloud plugins, the image model they are handed, storage and the configuration, and the
 * shared vocabulary at the bottom.
 */
const LAYERS: readonly { name: string; paths: readonly string[] }[] = [
  { name: 'cli', paths: ['src/cli/'] },
  { name: 'steps (the pipeline)', paths: ['src/steps/'] },
  { name: 'release', paths: ['src/release/'] },
  { name: 'boot test', paths: ['src/boottest/'] },
  { name: 'supply chain', paths: ['src/supply/'] },
  { name: 'local builders', paths: ['src/local/'] },
  { name: 'clouds', paths: ['src/clouds/'] },
  { name: 'state (image model, plan)', paths: ['src/state/'] },
  { name: 'storage', paths: ['src/storage/'] },
  { name: 'config', paths: ['src/config/'] },
  // shared vocabulary: utilities, the step names, the option types
  { name: 'vocabulary', paths: ['src/util/', 'src/steps/steps.ts', 'src/cli/options.ts'] },
];

/** The layer of a file: the most specific matching path wins (src/steps/steps.ts is vocabulary, not steps). */
function layerOf(file: string): number {
  let best = -1;
  let bestLen = -1;
  LAYERS.forEach((l, i) => {
    for (const p of l.paths) {
      if ((file === p || (p.endsWith('/') && file.startsWith(p))) && p.length > bestLen) {
        best = i;
        bestLen = p.length;
      }
    }
  });
  return best;
}

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(join(ROOT, dir), { withFileTypes: true })) {
    const rel = `${dir}/${e.name}`;
    if (e.isDirectory()) out.push(...sourceFiles(rel));
    else if (e.name.endsWith('.ts')) out.push(rel);
  }
  return out;
}

/** Relative imports of a file, resolved to repository paths (.js -> .ts). */
function importsOf(file: string): string[] {
  const info = ts.preProcessFile(readFileSync(join(ROOT, file), 'utf8'), true, true);
  return info.importedFiles
    .map((f) => f.fileName)
    .filter((f) => f.startsWith('.'))
    .map((f) => relative(ROOT, resolve(ROOT, dirname(file), f)).replace(/\.js$/, '.ts'));
}

describe('layers', () => {
  const files = sourceFiles('src');

  it('every source file belongs to a layer', () => {
    expect(files.length).toBeGreaterThan(100);
    expect(files.filter((f) => layerOf(f) < 0)).toEqual([]);
  });

  it('no module imports from a layer above its own', () => {
    const upward: string[] = [];
    let checked = 0;
    for (const file of files) {
      const from = layerOf(file);
      for (const target of importsOf(file)) {
        checked++;
        const to = layerOf(target);
        if (to >= 0 && to < from) {
          upward.push(`${file} (${LAYERS[from]!.name}) imports ${target} (${LAYERS[to]!.name})`);
        }
      }
    }
    expect(checked).toBeGreaterThan(300);
    expect(upward).toEqual([]);
  });

  it('the check sees type-only, re-export and dynamic imports', () => {
    const src = [
      "import type { A } from '../steps/pipeline.js';",
      "export { B } from '../cli/main.js';",
      "const m = await import('../local/index.js');",
    ].join('\n');
    const found = ts.preProcessFile(src, true, true).importedFiles.map((f) => f.fileName);
    expect(found).toEqual(['../steps/pipeline.js', '../cli/main.js', '../local/index.js']);
  });
});
