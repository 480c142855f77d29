// The bundled CLI (libexec/bundle.mjs) and its loader with the V8 code cache (libexec/cli.cjs): the cache is made
// by a run, grows with each new step, is used only with the bundle it was made from, and a damaged cache costs
// nothing but time. The loader runs from a copy of libexec/ and dist/cli/ so the checkout's own cache is untouched.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cp, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { SourceMap } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, runBuild } from '../helpers/cli.js';
import { RELEASES_URL } from '../helpers/overlay.js';

const run = promisify(execFile);
let dir: string;
let cli: string;
let bundle: string;

beforeAll(async () => {
  // compiles dist/ when it is stale
  expect((await runBuild(['--version'])).code).toBe(0);
  dir = await mkdtemp(join(tmpdir(), 'cib-bundle-'));
  await mkdir(join(dir, 'libexec'));
  await mkdir(join(dir, 'dist', 'cli'), { recursive: true });
  await cp(join(ROOT, 'libexec', 'cli.cjs'), join(dir, 'libexec', 'cli.cjs'));
  for (const f of ['main.cjs', 'main.cjs.map']) {
    await cp(join(ROOT, 'dist', 'cli', f), join(dir, 'dist', 'cli', f));
  }
  cli = join(dir, 'libexec', 'cli.cjs');
  bundle = join(dir, 'dist', 'cli', 'main.cjs');
}, 300_000);
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const env = { ...process.env, CIB_ROOT: ROOT, NO_COLOR: '1' };
const node = (...args: string[]) => run(process.execPath, [cli, ...args], { env });

/** the cache of this bundle (named by its digest) and the steps it covers */
async function cacheFiles(): Promise<{ cache?: string; steps: string[] }> {
  const id = /^\/\/ bundle ([0-9a-f]{32})\n/.exec(await readFile(bundle, 'utf8'))?.[1];
  const names = await readdir(join(dir, 'dist', 'cli'));
  const cache = names.find((n) => n === `main.cjs.${id}.cache`);
  const steps = cache
    ? (await readFile(join(dir, 'dist', 'cli', `${cache}.steps`), 'utf8')).split('\n').filter(Boolean)
    : [];
  return { ...(cache ? { cache: join(dir, 'dist', 'cli', cache) } : {}), steps };
}

describe('the code cache of the bundled CLI', () => {
  it('is written by the first run, keyed by the digest on the bundle’s first line, and grows with each step', async () => {
    const id = /^\/\/ bundle ([0-9a-f]{32})\n/.exec(await readFile(bundle, 'utf8'))?.[1];
    expect(id).toBeDefined();
    const { stdout } = await node('--version');
    expect(stdout).toMatch(/^cloud-image-builder /);
    const first = await cacheFiles();
    expect(first.cache).toBe(`${bundle}.${id}.cache`);
    expect(first.steps).toEqual(['--version']);
    const size1 = (await stat(first.cache!)).size;

    // the same step again: the cache covers it and is left alone
    const mtime = (await stat(first.cache!)).mtimeMs;
    await node('--version');
    expect((await stat(first.cache!)).mtimeMs).toBe(mtime);

    // a new step: the cache is rewritten with what that step compiled too
    const work = join(dir, 'work');
    await node('configs', '--work-dir', work, '--releases-url', RELEASES_URL);
    const second = await cacheFiles();
    expect(second.steps).toEqual(['--version', 'configs']);
    expect((await stat(second.cache!)).size).toBeGreaterThan(size1);
    expect(await readFile(join(work, 'images.yaml'), 'utf8')).toMatch(/^---\n/);
    // no temporary files are left next to it
    expect((await readdir(join(dir, 'dist', 'cli'))).filter((n) => n.includes('.tmp'))).toEqual([]);
  }, 120_000);

  it('a damaged cache is refused by V8 and replaced; the run is not affected', async () => {
    const { cache } = await cacheFiles();
    expect(cache).toBeDefined();
    const bytes = await readFile(cache!);
    const half = bytes.subarray(0, Math.floor(bytes.length / 2));
    await writeFile(cache!, half);
    const { stdout } = await node('--version');
    expect(stdout).toMatch(/^cloud-image-builder /);
    // rewritten whole, for this step only (what the refused cache covered is not known any more) ...
    const fresh = await readFile(cache!);
    expect(fresh.equals(half)).toBe(false);
    expect((await cacheFiles()).steps).toEqual(['--version']);
    // ... and V8 takes the new one: the next run of that step leaves it alone
    const mtime = (await stat(cache!)).mtimeMs;
    await node('--version');
    expect((await stat(cache!)).mtimeMs).toBe(mtime);
  }, 60_000);

  it('a cache made for another bundle is never used: its name carries the other digest', async () => {
    const { cache } = await cacheFiles();
    const other = cache!.replace(/\.[0-9a-f]{32}\.cache$/, `.${'0'.repeat(32)}.cache`);
    await cp(cache!, other);
    await rm(cache!);
    await node('--version');
    const now = await cacheFiles();
    expect(now.cache).toBeDefined();
    expect((await readdir(join(dir, 'dist', 'cli'))).filter((n) => n.endsWith('.cache')).sort()).toEqual(
      [now.cache!.split('/').pop()!, other.split('/').pop()!].sort(),
    );
  }, 60_000);
});

describe('V8 flags and the code cache', () => {
  it('a run under other V8 flags (./build runs configs with --no-opt) has a cache of its own', async () => {
    const plain = await cacheFiles();
    expect(plain.cache).toBeDefined();
    const before = await readFile(plain.cache!);
    await run(process.execPath, ['--no-opt', cli, '--version'], { env });
    const names = (await readdir(join(dir, 'dist', 'cli'))).filter((n) => n.endsWith('.cache'));
    const flagged = names.filter((n) => /^main\.cjs\.[0-9a-f]{32}\.[0-9a-f]{8}\.cache$/.test(n));
    expect(flagged).toHaveLength(1);
    // the cache of the runs without flags is untouched
    expect((await readFile(plain.cache!)).equals(before)).toBe(true);
    // and the flagged one is taken by the next run under the same flags (not rewritten)
    const f = join(dir, 'dist', 'cli', flagged[0]!);
    const mtime = (await stat(f)).mtimeMs;
    await run(process.execPath, ['--no-opt', cli, '--version'], { env });
    expect((await stat(f)).mtimeMs).toBe(mtime);
  }, 60_000);

  it('./build runs configs, and only configs, without the optimizing compiler and lazily compiled', async () => {
    const work = join(dir, 'wrapper-work');
    expect((await runBuild(['configs', '--work-dir', work, '--releases-url', RELEASES_URL])).code).toBe(0);
    expect((await runBuild(['state', '--help'])).code).toBe(0);
    const id = /^\/\/ bundle ([0-9a-f]{32})\n/.exec(
      await readFile(join(ROOT, 'dist', 'cli', 'main.cjs'), 'utf8'),
    )?.[1];
    const noOpt = createHash('sha256').update('--no-opt --max-lazy').digest('hex').slice(0, 8);
    const steps = async (name: string) =>
      (await readFile(join(ROOT, 'dist', 'cli', `${name}.steps`), 'utf8')).split('\n');
    // (the checkout's own caches, which other tests' runs write too: only configs runs ever write the flagged one)
    const flagged = await steps(`main.cjs.${id}.${noOpt}.cache`);
    expect(flagged).toContain('configs');
    expect(flagged).not.toContain('state');
  }, 120_000);
});

describe('the bundle’s source map', () => {
  it('maps the bundle back to the TypeScript sources (what --debug stack traces show)', async () => {
    const text = await readFile(bundle, 'utf8');
    expect(text.trimEnd().endsWith('//# sourceMappingURL=main.cjs.map')).toBe(true);
    // the loader reads it as Latin-1: it must be ASCII
    expect(/[^\x00-\x7f]/.test(text)).toBe(false);
    const map = new SourceMap(JSON.parse(await readFile(`${bundle}.map`, 'utf8')));
    const lines = text.split('\n');
    const line = lines.findIndex((l) => l.includes('function repoRoot('));
    expect(line).toBeGreaterThan(0);
    const entry = map.findEntry(line, lines[line]!.indexOf('function repoRoot(')) as {
      originalSource?: string;
      originalLine: number;
    };
    expect(entry.originalSource).toMatch(/\/src\/cli\/main\.ts$/);
    const src = (await readFile(join(ROOT, 'src', 'cli', 'main.ts'), 'utf8')).split('\n');
    expect(src[entry.originalLine]).toContain('function repoRoot(');
  });

  it('with --debug (--enable-source-maps) the loader requires the bundle, so Node applies its source map', async () => {
    const script = [
      `process.argv = [process.argv[0], ${JSON.stringify(cli)}, '--version'];`,
      `require(${JSON.stringify(cli)});`,
      `const m = require('node:module').findSourceMap(${JSON.stringify(bundle)});`,
      `console.log('MAP ' + (m ? m.payload.sources.filter((s) => s.endsWith('.ts')).length : 'none'));`,
    ].join('\n');
    const { stdout } = await run(process.execPath, ['--enable-source-maps', '-e', script], { env });
    expect(stdout).toMatch(/^cloud-image-builder /m);
    expect(Number(/^MAP (\d+)$/m.exec(stdout)?.[1])).toBeGreaterThan(50);
  });
});
