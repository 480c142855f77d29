// ./build verify: rebuild the selected images in a temporary work directory and compare each with the latest
// revision storage holds: the root filesystem manifests of the two (read from the stored image itself, not from
// a stored manifest that could have been replaced with it), then the bytes. Exit 0 only when all match.
import { mkdir, mkdtemp, readdir, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { IMAGE_FORMATS } from '../local/convert.js';
import { Image } from '../state/image.js';
import { stateAfter } from '../state/image-state.js';
import { refreshState } from '../state/refresh.js';
import { readDisk } from '../supply/disk.js';
import { describeDiff, diffManifests, type Manifest } from '../supply/manifest.js';
import { errorMessage, UserError } from '../util/errors.js';
import { hashFile } from '../util/fs.js';
import type { RunContext } from './context.js';

export interface VerifyResult {
  image: string;
  ok: boolean;
  /** one line: what matched, or the first differing files */
  detail: string;
}

/** Entries of the work directory a rebuild shares (caches, installed configs and scripts); the rest is its own. */
const OWN = new Set(['images', 'images.yaml', 'packer']);

async function scratchWorkDir(workDir: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'cib-verify-'));
  for (const name of await readdir(workDir)) {
    if (OWN.has(name) || name.startsWith('.')) continue;
    await symlink(join(workDir, name), join(dir, name));
  }
  return dir;
}

const DECOMPRESS: Record<string, string> = { gz: 'gzip', bz2: 'bzip2', xz: 'xz', zstd: 'zstd' };

/** The stored image file, unpacked to something qemu-img reads; returns its path and qemu-img format. */
async function unpackStored(
  image: Image,
  file: string,
  dir: string,
): Promise<{ path: string; format: string }> {
  const c = image.config;
  const path = join(dir, file);
  if (c.image_format === 'raw.tar.gz' || c.image_compress === 'tar.gz') {
    await execa('tar', ['-xzf', path, '-C', dir]);
    return { path: join(dir, 'disk.raw'), format: 'raw' };
  }
  const format = IMAGE_FORMATS[c.image_format] ?? c.image_format;
  const compress = c.image_compress ?? '';
  if (!compress) return { path, format };
  const cmd = DECOMPRESS[compress];
  if (!cmd) throw new UserError(`${c.config_key}: cannot unpack image_compress "${compress}"`);
  const out = join(dir, image.imageFile);
  await execa('sh', ['-c', `${cmd} -dc -- "$1" > "$2"`, 'unpack', path, out]);
  return { path: out, format };
}

function sameOrDiff(stored: Manifest, rebuilt: Manifest): string | undefined {
  if (stored.digest === rebuilt.digest) return undefined;
  return describeDiff(diffManifests(stored, rebuilt));
}

/** Rebuild and compare every selected image; prints one line per image and returns the exit code. */
export async function runVerify(
  selected: readonly Image[],
  ctx: RunContext,
  out: (t: string) => void,
): Promise<number> {
  const { options, log } = ctx;
  const states = await refreshState(selected, {
    target: 'state',
    disable: [],
    revise: false,
    pool: ctx.pool,
    cloudActions: (cloud) => ctx.cloud(cloud).actions,
    parallel: options.parallel,
    log,
  });
  const results: VerifyResult[] = [];
  const todo: { stored: Image; rebuild: Image }[] = [];
  const work = await scratchWorkDir(options.workDir);
  try {
    for (const { image } of states) {
      if (!image.storageUrl || !image.state.uploaded) {
        results.push({ image: image.imageName, ok: false, detail: 'nothing stored to compare with' });
        continue;
      }
      const rebuild = new Image(image.config, work);
      rebuild.record(stateAfter.revision(rebuild.state, image.revision));
      todo.push({ stored: image, rebuild });
    }
    if (todo.length > 0) {
      log.info(`verify: rebuilding ${todo.length} image(s) in ${work}`);
      const { buildLocal, localBuildOptions } = await import('../local/index.js');
      const built = await buildLocal(
        todo.map((t) => t.rebuild),
        { log, options: localBuildOptions({ ...options, workDir: work }) },
      );
      const byKey = new Map(built.map((r) => [r.configKey, r]));
      for (const { stored, rebuild } of todo) {
        const r = byKey.get(stored.config.config_key);
        if (!r?.ok) {
          results.push({
            image: stored.imageName,
            ok: false,
            detail: `rebuild failed: ${r?.error ?? 'no result'}`,
          });
          continue;
        }
        try {
          results.push(await compare(stored, rebuild, work, ctx));
        } catch (err) {
          results.push({ image: stored.imageName, ok: false, detail: errorMessage(err) });
        }
      }
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  const width = Math.max(...results.map((r) => r.image.length), 5);
  out(['IMAGE'.padEnd(width), 'RESULT'].join('  '));
  for (const r of results) out(`${r.image.padEnd(width)}  ${r.ok ? 'match' : 'DIFFERS'}: ${r.detail}`);
  const bad = results.filter((r) => !r.ok).length;
  out(
    bad === 0
      ? `verify: all ${results.length} image(s) match storage`
      : `verify: ${bad} of ${results.length} image(s) do not match storage`,
  );
  return bad === 0 ? 0 : 1;
}

async function compare(stored: Image, rebuild: Image, work: string, ctx: RunContext): Promise<VerifyResult> {
  const dir = join(work, '.stored', stored.config.image_key);
  await mkdir(dir, { recursive: true });
  const file = stored.uploadFile;
  // the stored file is checked against its stored .sha512 on the way in
  await ctx.pool.get(stored.storageUrl!).retrieve(dir, [file], { checksum: true });
  const [storedSha, rebuiltSha] = await Promise.all([
    hashFile(join(dir, file), 'sha512'),
    hashFile(rebuild.uploadPath, 'sha512'),
  ]);
  const unpacked = await unpackStored(stored, file, dir);
  const [a, b] = await Promise.all([readDisk(unpacked.path, unpacked.format), readDisk(rebuild.localImage)]);
  await rm(dir, { recursive: true, force: true });
  const diff = sameOrDiff(a.manifest, b.manifest);
  if (diff) return { image: stored.imageName, ok: false, detail: diff };
  const recorded = stored.state.supply?.content_digest;
  if (recorded && recorded !== a.manifest.digest) {
    return {
      image: stored.imageName,
      ok: false,
      detail: `the stored image's content ${a.manifest.digest} is not the ${recorded} its metadata records`,
    };
  }
  return {
    image: stored.imageName,
    ok: true,
    detail: `content ${a.manifest.digest}${storedSha === rebuiltSha ? ', bit-identical' : ', same content (the image bytes differ)'}`,
  };
}
