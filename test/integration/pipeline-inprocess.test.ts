// The whole pipeline in-process: configs -> state -> local (a stub build) -> upload -> import -> publish, and
// rollback, on file:// storage with a fake cloud plugin. Every effect (environment, storage, clouds, the build,
// the clock) is passed to run(); nothing touches a real cloud or builds a real image.
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseArgs } from '../../src/cli/args.js';
import type { CloudPlugin } from '../../src/clouds/types.js';
import { parseMetadata } from '../../src/state/metadata.js';
import { run } from '../../src/steps/pipeline.js';
import { createStoragePool, type StoragePool } from '../../src/storage/index.js';
import { silentLogger } from '../../src/util/log.js';
import { ROOT } from '../helpers/cli.js';
import { makeOverlay, RELEASES_URL } from '../helpers/overlay.js';

let base: string;
let overlay: string;
let pool: StoragePool;
const log = silentLogger();

/** What the fake cloud holds: image id -> name, per region. */
const cloudImages = new Map<string, { name: string; regions: Set<string> }>();
let nextId = 1;
const fake: CloudPlugin = {
  name: 'fake',
  actions: new Set(['import', 'publish', 'delete']),
  checkConfig: (c) =>
    c.image_format === 'qcow2' ? [] : [{ key: 'image_format', expected: 'qcow2', found: c.image_format }],
  async importImage(image) {
    const id = `img-${nextId++}`;
    cloudImages.set(id, { name: image.imageName, regions: new Set(['home-1']) });
    return { import_id: id, import_region: 'home-1', imported: '2026-11-29T10:00:00.000Z' };
  },
  async publishImage(image) {
    const id = image.state.import_id!;
    cloudImages.get(id)!.regions.add('away-2');
    return { artifacts: { 'home-1': id, 'away-2': id }, failures: [], published: '2026-11-29T10:01:00.000Z' };
  },
  async deleteImage(_image, importId) {
    cloudImages.delete(importId);
  },
};
const clouds = (name: string): CloudPlugin => {
  if (name !== 'fake') throw new Error(`no cloud ${name}`);
  return fake;
};

/** the stub build: an image file of a few bytes where the local step leaves the real one */
const builds: string[] = [];
const build = async (images: readonly import('../../src/state/image.js').Image[]) =>
  Promise.all(
    images.map(async (image) => {
      await mkdir(image.localDir, { recursive: true });
      await writeFile(image.uploadPath, `image ${image.imageName}\n`);
      builds.push(image.imageName);
      return { configKey: image.config.config_key, ok: true };
    }),
  );

async function buildStep(step: string, ...args: string[]): Promise<{ code: number; out: string }> {
  const parsed = parseArgs(
    [step, '--work-dir', join(base, 'work'), '--custom', overlay, '--releases-url', RELEASES_URL, ...args],
    {},
    ROOT,
  );
  if ('helpShown' in parsed) throw new Error('help shown');
  const lines: string[] = [];
  const code = await run(parsed.options, log, {
    out: (t) => lines.push(t),
    now: () => new Date('2026-11-29T10:00:00.000Z'),
    env: {},
    pool,
    clouds,
    build,
  });
  return { code, out: lines.join('\n') };
}

beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), 'cib-inprocess-'));
  overlay = await makeOverlay({
    storageUrl: `file://${base}/storage/{v_version}/{cloud}/{arch}`,
    clouds: ['fake'],
    parent: base,
  });
  pool = createStoragePool({ log, env: {} });
});
afterAll(async () => {
  await pool.close();
  await rm(base, { recursive: true, force: true });
});

describe('the pipeline in-process (file:// storage, a fake cloud, a stub build)', () => {
  it('runs state -> local -> upload -> import -> publish and rollback in well under a second', async () => {
    const started = performance.now();
    const storage = join(base, 'storage', 'v3.24', 'fake', 'x86_64');

    const imp = await buildStep('import', '--disable', 'test');
    expect(imp.code).toBe(0);
    expect(imp.out).toMatch(/fake_alpine-3\.24\.\d+-x86_64-uefi-tiny-r0\s+fake\s+local upload import/);
    expect(builds).toHaveLength(1);
    const stored = (await readdir(storage)).sort();
    const meta = stored.find((f) => f.endsWith('-r0.yaml'))!;
    expect(stored).toEqual(expect.arrayContaining([meta, `${meta}.sha512`]));
    const { readFile } = await import('node:fs/promises');
    const afterImport = parseMetadata(await readFile(join(storage, meta), 'utf8'), meta).state;
    expect(afterImport).toMatchObject({ revision: 0, import_id: 'img-1', import_region: 'home-1' });
    expect(afterImport.built).not.toBeNull();
    expect(afterImport.uploaded).not.toBeNull();

    // rollback undoes import, upload and local, in that order
    const rb = await buildStep('rollback');
    expect(rb.code).toBe(0);
    expect(cloudImages.size).toBe(0);
    expect(await readdir(storage)).toEqual([]);
    expect(await readdir(join(base, 'work', 'images', 'fake')).then((d) => d.length)).toBe(0);

    // the whole chain again, now to publish
    const pub = await buildStep('publish', '--disable', 'test');
    expect(pub.code).toBe(0);
    expect(builds).toHaveLength(2);
    const published = parseMetadata(await readFile(join(storage, meta), 'utf8'), meta).state;
    expect(published).toMatchObject({
      import_id: 'img-2',
      published: '2026-11-29T10:01:00.000Z',
      artifacts: { 'home-1': 'img-2', 'away-2': 'img-2' },
    });

    // a published image is not rolled back
    const refused = await buildStep('rollback');
    expect(refused.code).toBe(0);
    expect(refused.out).toContain('refused (published/released)');
    expect(cloudImages.size).toBe(1);

    // and nothing is left to do
    const again = await buildStep('publish', '--disable', 'test');
    expect(again.code).toBe(0);
    expect(builds).toHaveLength(2);

    const ms = performance.now() - started;
    // the figure is printed for the record; the budget is generous for a busy 2-core machine
    console.log(`in-process pipeline: ${ms.toFixed(0)} ms`);
    expect(ms).toBeLessThan(5000);
  });

  it('checks the fake cloud settings at configs through the plugin given to run()', async () => {
    const bad = await makeOverlay({
      storageUrl: `file://${base}/storage2`,
      clouds: ['fake'],
      defaults: { image_format: 'vhd' },
      parent: base,
    });
    const parsed = parseArgs(
      ['configs', '--work-dir', join(base, 'work2'), '--custom', bad, '--releases-url', RELEASES_URL],
      {},
      ROOT,
    );
    if ('helpShown' in parsed) throw new Error('help shown');
    await expect(run(parsed.options, log, { env: {}, pool, clouds, build, out: () => {} })).rejects.toThrow(
      /image_format: expected qcow2, got "vhd"/,
    );
  });
});
