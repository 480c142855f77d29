// Real Alpine images built by the chroot builder through the real CLI, for the tests of several issues.
//
//   chrootUnavailable(arch, firmware)  why a chroot build cannot run here (for a skip), or undefined
//   prepareChrootEnv(base, opts)       a throwaway setup: the overlays/alpine-mirror overlay (+ a release key the
//                                      test makes in its keys/), a --cdn-url directory with the real mirror,
//                                      the signed minirootfs and the stand-in repository (alpine-standin.ts),
//                                      and a releases.json that names 3.19.4
//   localArgs(env, work, only, extra)  the `./build local` arguments for it
//   ensureTinyImage(firmware, arch, bootstrap)  one tiny image (tiny-cloud, NoCloud) built once per input hash and cached
//                                      under os.tmpdir()/cib-alpine-images; returns its qcow2 and build log.
//                                      Shared by the chroot builder's boot tests and other tests (test step,
//                                      SBOM, reproducibility): build it once, boot it on a snapshot overlay.
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { cp, mkdir, open, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { onPath as has } from '../../src/util/on-path.js';
import { makeTestKey, signFile, type TestKey } from '../fixtures/local/mirror.js';
import {
  type AlpineArch,
  alpineMirror,
  ensureStandinRepo,
  MIRROR_RELEASE,
  makeTestCdn,
  REPO_ROOT,
  type StandinRepo,
} from './alpine-standin.js';
import { runBuild } from './cli.js';

export const IMAGE_CACHE = process.env.CIB_IMAGE_CACHE ?? join(tmpdir(), 'cib-alpine-images');

export type Firmware = 'bios' | 'uefi';

/** bumped when TinyImage (image.json) changes shape */
const CACHE_FORMAT = 2;

/** Why a chroot build of `arch`/`firmware` from the mirror cannot run on this machine, or undefined. */
export async function chrootUnavailable(
  arch: AlpineArch = 'x86_64',
  firmware: Firmware = 'bios',
): Promise<string | undefined> {
  const m = alpineMirror();
  if (m.reason) return m.reason;
  if (process.getuid?.() !== 0)
    return 'needs root (the BIOS layout loop-mounts for extlinux; the tests build both)';
  const tools = ['unshare', 'mke2fs', 'debugfs', 'sfdisk', 'qemu-img', 'apt-get', 'dpkg-deb'];
  if (firmware === 'bios') tools.push('tune2fs');
  else tools.push('mkfs.vfat', 'mcopy', 'grub-mkimage');
  const missing: string[] = [];
  for (const t of tools) if (!(await has(t))) missing.push(t);
  if (missing.length) return `missing ${missing.join(', ')} (see .ci/apt-packages.txt)`;
  if (arch === 'aarch64' && !(await has('qemu-aarch64-static')))
    return 'missing qemu-aarch64-static (qemu-user-static)';
  return undefined;
}

export interface ChrootEnv {
  base: string;
  overlay: string;
  cdnUrl: string;
  releasesUrl: string;
  repo: StandinRepo;
  key: TestKey;
  minirootfs: string;
}

/** The overlay, CDN directory and releases.json of a chroot build from the mirror (see the header). */
export async function prepareChrootEnv(
  base: string,
  opts: { arch?: AlpineArch; signature?: 'good' | 'none' | 'forged'; key?: TestKey } = {},
): Promise<ChrootEnv> {
  const arch = opts.arch ?? 'x86_64';
  const mirror = alpineMirror();
  if (!mirror.dir) throw new Error(mirror.reason);
  const repo = await ensureStandinRepo(arch);
  const key = opts.key ?? (await makeTestKey('Chroot Builder Test Release Key'));
  const cdn = await makeTestCdn(join(base, 'cdn'), {
    mirror: mirror.dir,
    arch,
    standin: repo,
    sign: (f) => signFile(f, key.privateKey),
    signature: opts.signature,
  });
  const overlay = join(base, 'overlay');
  await cp(join(REPO_ROOT, 'overlays', 'alpine-mirror'), overlay, {
    recursive: true,
    verbatimSymlinks: true,
  });
  await mkdir(join(overlay, 'keys'), { recursive: true });
  await writeFile(join(overlay, 'keys', 'test-release.asc'), key.publicArmored);
  return {
    base,
    overlay,
    cdnUrl: cdn.cdnUrl,
    releasesUrl: `file://${join(overlay, 'releases.json')}`,
    repo,
    key,
    minirootfs: cdn.minirootfs,
  };
}

/** `./build <step>` from the mirror for the variants with all `only` keys (e.g. 3.19 x86_64 bios tiny nocloud). */
export function stepArgs(
  step: string,
  env: Pick<ChrootEnv, 'overlay' | 'releasesUrl' | 'cdnUrl'>,
  work: string,
  only: string[],
  extra: string[] = [],
): string[] {
  return [
    step,
    '--custom',
    env.overlay,
    '--work-dir',
    work,
    '--releases-url',
    env.releasesUrl,
    '--cdn-url',
    env.cdnUrl,
    '--only',
    ...only,
    '--no-color',
    ...extra,
  ];
}

/** `./build local` from the mirror for the variants with all `only` keys. */
export function localArgs(env: ChrootEnv, work: string, only: string[], extra: string[] = []): string[] {
  return stepArgs('local', env, work, only, extra);
}

export interface TinyImage {
  arch: AlpineArch;
  firmware: Firmware;
  /** tiny (x86_64: tiny-cloud, OpenRC) or minimal (aarch64: the minirootfs's userland, busybox init) */
  bootstrap: string;
  configKey: string;
  imageName: string;
  /** the image (qcow2) */
  image: string;
  format: 'qcow2';
  /** work/images/<cloud>/<image_key> of the build (build.log, metadata) */
  localDir: string;
  buildLog: string;
  /** the CLI's stderr of the build */
  stderr: string;
  kernelRelease: string;
  /** the --custom overlay, --cdn-url and --releases-url the image was built with (they stay in the cache):
   *  a later step on a copy of the build's work directory must name the same overlay */
  env: Pick<ChrootEnv, 'overlay' | 'cdnUrl' | 'releasesUrl'>;
}

async function inputsHash(
  arch: AlpineArch,
  firmware: Firmware,
  repo: StandinRepo,
  bootstrap: string,
): Promise<string> {
  // the format of image.json is part of the key: an entry cached by an older helper is not read back
  const h = createHash('sha256').update(`${CACHE_FORMAT}\0${arch}\0${firmware}\0${repo.dir}\0`);
  // (the default bootstraps keep their earlier keys)
  if (bootstrap !== defaultBootstrap(arch)) h.update(`bootstrap=${bootstrap}\0`);
  const files: string[] = [];
  const walk = async (d: string) => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else files.push(p);
    }
  };
  for (const d of ['scripts', 'libexec', 'configs', 'overlays/alpine-mirror', 'src/local/chroot']) {
    await walk(join(REPO_ROOT, d));
  }
  for (const f of files.sort())
    h.update(relative(REPO_ROOT, f)).update(await readFile(f).catch(() => Buffer.alloc(0)));
  return h.digest('hex').slice(0, 16);
}

/** Wait for an exclusive lock file (its holder's pid inside); a dead holder's lock is taken over. */
export async function lock(path: string): Promise<() => Promise<void>> {
  for (;;) {
    try {
      const fh = await open(path, 'wx');
      await fh.write(String(process.pid));
      await fh.close();
      return () => rm(path, { force: true });
    } catch {
      const pid = Number((await readFile(path, 'utf8').catch(() => '')).trim());
      let alive = false;
      try {
        if (pid > 0) {
          process.kill(pid, 0);
          alive = true;
        }
      } catch {
        alive = false;
      }
      if (!alive) await rm(path, { force: true });
      else await new Promise((r) => setTimeout(r, 500));
    }
  }
}

const cached = new Map<string, Promise<TinyImage>>();

/** x86_64: tiny; aarch64: minimal (the minirootfs's userland, busybox init: the fastest aarch64 boot) */
function defaultBootstrap(arch: AlpineArch): 'tiny' | 'minimal' {
  return arch === 'aarch64' ? 'minimal' : 'tiny';
}

/**
 * One tiny x86_64 (or aarch64) image of Alpine 3.19 from the mirror, with tiny-cloud for NoCloud, built by the
 * chroot builder through `./build local` once per input hash (scripts, configs, the builder, the stand-ins)
 * and cached. Boot it on a snapshot overlay: the file is shared.
 * aarch64 builds `minimal` unless asked for `tiny`: the whole tiny-cloud userland (OpenRC, sshd, tiny-cloud,
 * the official service set) from the stand-in repository's aarch64 index (alpine-standin-userland.ts), which
 * the boot test's aarch64 run uses.
 */
export function ensureTinyImage(
  firmware: Firmware = 'bios',
  arch: AlpineArch = 'x86_64',
  bootstrap: 'tiny' | 'minimal' = defaultBootstrap(arch),
): Promise<TinyImage> {
  const k = `${arch}-${firmware}-${bootstrap}`;
  let p = cached.get(k);
  if (!p) {
    p = buildTinyImage(firmware, arch, bootstrap);
    cached.set(k, p);
  }
  return p;
}

async function buildTinyImage(firmware: Firmware, arch: AlpineArch, bootstrap: string): Promise<TinyImage> {
  const repo = await ensureStandinRepo(arch);
  const suffix = bootstrap === defaultBootstrap(arch) ? '' : `-${bootstrap}`;
  const dir = join(
    IMAGE_CACHE,
    `${arch}-${firmware}${suffix}-${await inputsHash(arch, firmware, repo, bootstrap)}`,
  );
  const done = join(dir, 'image.json');
  await mkdir(IMAGE_CACHE, { recursive: true });
  const unlock = await lock(`${dir}.lock`);
  try {
    if (existsSync(done)) return JSON.parse(await readFile(done, 'utf8')) as TinyImage;
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true });
    const env = await prepareChrootEnv(join(dir, 'env'), { arch });
    const work = join(dir, 'work');
    const cloud = 'nocloud';
    const r = await runBuild(localArgs(env, work, ['3.19', arch, firmware, bootstrap, 'vm', cloud]), {
      timeoutMs: 15 * 60_000,
    });
    const configKey = `3.19-${arch}-${firmware}-${bootstrap}-vm-${cloud}`;
    const imageName = `${cloud}_alpine-${MIRROR_RELEASE}-${arch}-${firmware}-${bootstrap}-r0`;
    const localDir = join(
      work,
      'images',
      cloud,
      `${MIRROR_RELEASE}-${arch}-${firmware}-${bootstrap}-vm-${cloud}`,
    );
    if (r.code !== 0) {
      throw new Error(`./build local failed (exit ${r.code}) for ${configKey}:\n${r.stderr.slice(-4000)}`);
    }
    const image: TinyImage = {
      arch,
      firmware,
      bootstrap,
      configKey,
      imageName,
      image: join(localDir, `${imageName}.qcow2`),
      format: 'qcow2',
      localDir,
      buildLog: join(localDir, 'build.log'),
      stderr: r.stderr,
      kernelRelease: repo.kernelRelease,
      env: { overlay: env.overlay, cdnUrl: env.cdnUrl, releasesUrl: env.releasesUrl },
    };
    if (!existsSync(image.image)) throw new Error(`${image.image} was not built:\n${r.stderr.slice(-3000)}`);
    await writeFile(`${done}.tmp`, JSON.stringify(image, null, 2));
    await rename(`${done}.tmp`, done);
    return image;
  } finally {
    await unlock();
  }
}
