import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import type { ImageConfig } from '../../src/config/types.js';
import type { Image } from '../../src/state/image.js';
import { runBuild } from '../helpers/cli.js';
import {
  fakeLocalBuild,
  makeOverlay,
  RELEASES_URL,
  readImages,
  readImagesRecords,
} from '../helpers/overlay.js';

async function sha512(path: string): Promise<string> {
  return createHash('sha512')
    .update(await readFile(path))
    .digest('hex');
}

/** every file in a storage directory (hidden temporary files included) */
async function storedFiles(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir)).sort();
  } catch {
    return [];
  }
}

async function expectCompleteCopy(image: Image, dir: string): Promise<void> {
  const files = await storedFiles(dir);
  expect(files).toEqual(
    [
      image.uploadFile,
      `${image.uploadFile}.sha512`,
      image.metadataFile,
      `${image.metadataFile}.sha512`,
    ].sort(),
  );
  for (const f of [image.uploadFile, image.metadataFile]) {
    expect((await readFile(join(dir, `${f}.sha512`), 'utf8')).trim()).toBe(await sha512(join(dir, f)));
  }
  expect(await sha512(join(dir, image.uploadFile))).toBe(await sha512(image.uploadPath));
}

describe('state and upload through the real CLI (file:// storage)', () => {
  let root: string;
  const overlays = new Map<string, string>();
  /** arguments for one work directory; each test has its own storage, through its own overlay */
  const cfg = (work: string, ...extra: string[]) => [
    '--work-dir',
    work,
    '--custom',
    overlays.get(work)!,
    '--releases-url',
    RELEASES_URL,
    ...extra,
  ];

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'cib-state-'));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
    for (const o of new Set(overlays.values())) await rm(o, { recursive: true, force: true });
  });

  async function prepared(
    name: string,
  ): Promise<{ work: string; config: ImageConfig; image: Image; dir: string }> {
    const work = join(root, name);
    const storage = join(root, `${name}-storage`);
    const overlay = await makeOverlay({ storageUrl: `file://${storage}/{v_version}/{cloud}/{arch}` });
    overlays.set(work, overlay);
    overlays.set(`${work}-other`, overlay);
    const r = await runBuild(['configs', ...cfg(work)]);
    expect(r.code, r.stderr).toBe(0);
    const config = Object.values(await readImages(work))[0]!;
    const image = await fakeLocalBuild(config, work);
    const dir = join(storage, image.vVersion, config.cloud, config.arch);
    return { work, config, image, dir };
  }

  it('plans, uploads, resumes from storage on another work directory, and rolls back', async () => {
    const { work, image, dir } = await prepared('plain');

    const st = await runBuild(['state', ...cfg(work)]);
    expect(st.code, st.stderr).toBe(0);
    expect(st.stdout).toMatch(new RegExp(`${image.imageName}\\s+\\S+\\s+upload release\\s+local`));
    const planned = Object.values(await readImagesRecords(work))[0]!;
    expect(planned.actions).toEqual(['upload', 'release']);

    const up = await runBuild(['upload', ...cfg(work)]);
    expect(up.code, up.stderr).toBe(0);
    await expectCompleteCopy(image, dir);
    const meta = parse(await readFile(join(dir, image.metadataFile), 'utf8'));
    expect(meta).toMatchObject({
      name: image.imageName,
      revision: 0,
      cloud: 'nocloud',
      project: 'test-project',
    });
    expect(meta.uploaded).toMatch(/^\d{4}-\d\d-\d\dT/);
    expect(meta.built).toBe('2026-11-20T10:00:00.000Z');

    const again = await runBuild(['upload', ...cfg(work)]);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain('nothing to do');

    // another machine: same configs and storage, empty work directory
    const other = `${work}-other`;
    const st2 = await runBuild(['state', ...cfg(other)]);
    expect(st2.code, st2.stderr).toBe(0);
    expect(st2.stdout).toMatch(new RegExp(`${image.imageName}\\s+\\S+\\s+release\\s+upload`));
    const fetched = parse(
      await readFile(join(other, 'images', 'nocloud', image.config.image_key, image.metadataFile), 'utf8'),
    );
    expect(fetched.uploaded).toBe(meta.uploaded);

    const rb = await runBuild(['rollback', ...cfg(work)]);
    expect(rb.code, rb.stderr).toBe(0);
    expect(await storedFiles(dir)).toEqual([]);
    await expect(stat(image.localDir)).rejects.toThrow(/ENOENT/);
  });

  it('a run killed after the image is stored resumes with exactly one complete copy', async () => {
    const { work, image, dir } = await prepared('crash-image');
    const killed = await runBuild(['upload', ...cfg(work)], { env: { CIB_CRASH_AT: 'upload:after-image' } });
    expect(killed.code).not.toBe(0);
    expect(await storedFiles(dir)).toEqual([image.uploadFile, `${image.uploadFile}.sha512`].sort());

    const resumed = await runBuild(['upload', ...cfg(work)]);
    expect(resumed.code, resumed.stderr).toBe(0);
    await expectCompleteCopy(image, dir);
    expect(parse(await readFile(image.metadataPath, 'utf8')).uploaded).toBeTruthy();
  });

  it('a run killed between the local and the stored metadata write uploads again', async () => {
    const { work, image, dir } = await prepared('crash-meta');
    const killed = await runBuild(['upload', ...cfg(work)], {
      env: { CIB_CRASH_AT: 'metadata:after-local-write' },
    });
    expect(killed.code).not.toBe(0);
    // local metadata says uploaded, storage has no metadata yet
    expect(parse(await readFile(image.metadataPath, 'utf8')).uploaded).toBeTruthy();
    expect(await storedFiles(dir)).not.toContain(image.metadataFile);

    const st = await runBuild(['state', ...cfg(work)]);
    expect(st.stdout).toMatch(new RegExp(`${image.imageName}\\s+\\S+\\s+upload release`));
    const resumed = await runBuild(['upload', ...cfg(work)]);
    expect(resumed.code, resumed.stderr).toBe(0);
    await expectCompleteCopy(image, dir);
  });

  it('--revise of a released image starts r1 beside r0', async () => {
    const { work, image, dir } = await prepared('revise');
    expect((await runBuild(['release', ...cfg(work)])).code).toBe(0);
    const released = parse(await readFile(join(dir, image.metadataFile), 'utf8'));
    expect(released.released).toBeTruthy();

    const idle = await runBuild(['state', ...cfg(work)]);
    expect(idle.code, idle.stderr).toBe(0);
    expect(idle.stdout).toContain('nothing to do');
    expect(idle.stdout).toMatch(new RegExp(`${image.imageName}\\s+\\S+\\s+-\\s+refused`));

    const refused = await runBuild(['rollback', ...cfg(work)]);
    expect(refused.code).toBe(0);
    expect(refused.stderr).toContain('rollback refused');
    expect(await storedFiles(dir)).toContain(image.metadataFile);

    const st = await runBuild(['state', '--revise', ...cfg(work)]);
    expect(st.code).toBe(0);
    expect(st.stderr).toContain('would bump revision to r1');
    const rev = await runBuild(['local', '--revise', ...cfg(work), '--disable', 'import']);
    // the local build itself needs Packer; what matters here is the bump and the plan
    const planned = Object.values(await readImagesRecords(work))[0]!;
    expect(planned.revision).toBe(1);
    expect(planned.actions).toEqual(['local']);
    expect(rev.stderr).toContain('revision bumped to r1');
    // r0 stays in storage untouched
    expect(await storedFiles(dir)).toContain(image.metadataFile);
  });
});
