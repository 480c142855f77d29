// The VM builder on real Alpine packages: the same tiny variant as ensureTinyImage (x86_64 BIOS tiny nocloud from
// the Alpine 3.19 mirror plus the stand-in repository), built by Packer + QEMU running the real scripts/setup in a
// builder VM that boots a stand-in of Alpine's virt ISO with the real Alpine userland.
//
//   ensureAlpineBuilderIso()   the stand-in ISO (test/fixtures/alpine-builder/make-iso.sh): the mirror's
//                              minirootfs + real packages (installed by its apk with Alpine's keys) + the
//                              stand-in kernel; cached by input hash under os.tmpdir()/cib-alpine-builder
//   ensureVmTinyImage()        the image, built once per input hash through `./build local` with `builder: vm`
//                              and cached under os.tmpdir()/cib-alpine-images (vm-x86_64-bios-<hash>)
//
// The ISO is published in the test's --cdn-url directory as alpine-virt-3.19.4-x86_64.iso with .sha256/.sha512 and
// an OpenPGP signature by the test's release key, which the overlay's keys/ trusts: the build verifies it exactly
// as it verifies Alpine's. The VM reaches the file:// mirror through Packer's HTTP server (src/local/vm-mirror.ts).
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { onPath as has } from '../../src/util/on-path.js';
import { publishIso } from '../fixtures/local/mirror.js';
import { IMAGE_CACHE, localArgs, lock, prepareChrootEnv, type TinyImage } from './alpine-image.js';
import {
  alpineMirror,
  ensureStandinRepo,
  MIRROR_RELEASE,
  MIRROR_VERSION,
  REPO_ROOT,
} from './alpine-standin.js';
import { runBuild } from './cli.js';

const run = promisify(execFile);

export const BUILDER_CACHE = join(tmpdir(), 'cib-alpine-builder');
const MAKE_ISO = join(REPO_ROOT, 'test', 'fixtures', 'alpine-builder', 'make-iso.sh');

/** Why the VM builder cannot build the mirror's tiny image here (for a skip), or undefined. */
export async function vmBuildUnavailable(): Promise<string | undefined> {
  const m = alpineMirror();
  if (m.reason) return m.reason;
  if (process.getuid?.() !== 0) return 'needs root (the stand-in builder ISO is made in a chroot)';
  const missing: string[] = [];
  for (const t of ['packer', 'qemu-system-x86_64', 'qemu-img', 'xorriso', 'cpio', 'unshare', 'debugfs'])
    if (!(await has(t))) missing.push(t);
  if (missing.length) return `missing ${missing.join(', ')} (see .ci/apt-packages.txt)`;
  return undefined;
}

async function hashFiles(h: ReturnType<typeof createHash>, paths: string[]): Promise<void> {
  const files: string[] = [];
  const walk = async (p: string) => {
    let entries: import('node:fs').Dirent[];
    try {
      entries = await readdir(p, { withFileTypes: true });
    } catch {
      files.push(p);
      return;
    }
    for (const e of entries) {
      const q = join(p, e.name);
      if (e.isDirectory()) await walk(q);
      else files.push(q);
    }
  };
  for (const p of paths) await walk(p);
  for (const f of files.sort())
    h.update(relative(REPO_ROOT, f)).update(await readFile(f).catch(() => Buffer.alloc(0)));
}

let isoPromise: Promise<string> | undefined;

/** The stand-in builder ISO with the real Alpine userland (see the header). */
export function ensureAlpineBuilderIso(): Promise<string> {
  isoPromise ??= buildIso();
  return isoPromise;
}

async function buildIso(): Promise<string> {
  const mirror = alpineMirror();
  if (!mirror.dir) throw new Error(mirror.reason);
  const repo = await ensureStandinRepo('x86_64');
  const minirootfs = join(
    mirror.dir,
    `v${MIRROR_VERSION}`,
    'releases',
    'x86_64',
    `alpine-minirootfs-${MIRROR_RELEASE}-x86_64.tar.gz`,
  );
  const main = join(mirror.dir, `v${MIRROR_VERSION}`, 'main');
  // the minirootfs is checked against the mirror's checksum before use
  const want = (await readFile(`${minirootfs}.sha512`, 'utf8')).split(/\s+/)[0];
  const got = createHash('sha512')
    .update(await readFile(minirootfs))
    .digest('hex');
  if (got !== want) throw new Error(`${minirootfs}: sha512 ${got} does not match its .sha512`);
  const h = createHash('sha256').update(`${got}\0${repo.dir}\0`);
  await hashFiles(h, [MAKE_ISO, join(main, 'x86_64', 'APKINDEX.tar.gz')]);
  const dir = join(BUILDER_CACHE, h.digest('hex').slice(0, 16));
  const iso = join(dir, 'builder.iso');
  if (existsSync(iso)) return iso;
  await mkdir(BUILDER_CACHE, { recursive: true });
  const unlock = await lock(`${dir}.lock`);
  try {
    if (existsSync(iso)) return iso;
    await mkdir(dir, { recursive: true });
    await run('sh', [MAKE_ISO, `${iso}.tmp`], {
      env: {
        ...process.env,
        MINIROOTFS: minirootfs,
        MIRROR_MAIN: main,
        STANDIN_REPO: repo.dir,
        STANDIN_KEY: repo.publicKeyPath,
      },
      maxBuffer: 16 << 20,
      timeout: 10 * 60_000,
    });
    await rename(`${iso}.tmp`, iso);
    return iso;
  } finally {
    await unlock();
  }
}

export interface VmTinyImage extends TinyImage {
  /** the builder VM's serial console log */
  serialLog: string;
}

/** The latest stable version and release named by a releases.json (the builder ISO's). */
async function latestStable(file: string): Promise<{ version: string; release: string }> {
  const j = JSON.parse(await readFile(file, 'utf8')) as {
    latest_stable: string;
    release_branches: { rel_branch: string; releases?: { version: string }[] }[];
  };
  const b = j.release_branches.find((r) => r.rel_branch === j.latest_stable);
  const release = b?.releases?.[0]?.version;
  if (!release) throw new Error(`${file}: no release of ${j.latest_stable}`);
  return { version: j.latest_stable.replace(/^v/, ''), release };
}

let vmPromise: Promise<VmTinyImage> | undefined;

/** The mirror's x86_64 BIOS tiny nocloud image built by the VM builder (see the header). */
export function ensureVmTinyImage(): Promise<VmTinyImage> {
  vmPromise ??= buildVmImage();
  return vmPromise;
}

async function buildVmImage(): Promise<VmTinyImage> {
  const iso = await ensureAlpineBuilderIso();
  const repo = await ensureStandinRepo('x86_64');
  const h = createHash('sha256').update(`vm\0${iso}\0${repo.dir}\0`);
  await hashFiles(
    h,
    ['scripts', 'libexec', 'configs', 'overlays/alpine-mirror', 'packer', 'src/local'].map((d) =>
      join(REPO_ROOT, d),
    ),
  );
  const dir = join(IMAGE_CACHE, `vm-x86_64-bios-${h.digest('hex').slice(0, 16)}`);
  const done = join(dir, 'image.json');
  await mkdir(IMAGE_CACHE, { recursive: true });
  const unlock = await lock(`${dir}.lock`);
  try {
    if (existsSync(done)) return JSON.parse(await readFile(done, 'utf8')) as VmTinyImage;
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true });
    const env = await prepareChrootEnv(join(dir, 'env'));
    // the builder ISO is the latest stable release's (as in alpine-cloud-images), whatever the variant's version
    const latest = await latestStable(join(env.overlay, 'releases.json'));
    await publishIso(join(dir, 'env', 'cdn'), iso, { ...latest, arch: 'x86_64', key: env.key });
    // the same variant, on the VM builder
    for (const f of ['alpine-mirror.yaml', 'images.yaml']) {
      const p = join(env.overlay, 'configs', f);
      if (!existsSync(p)) continue;
      const text = await readFile(p, 'utf8');
      if (text.includes('builder: vm')) continue; // images.yaml may be a link to alpine-mirror.yaml
      if (!text.includes('project: alpine-mirror-test')) throw new Error(`${p}: no Default project line`);
      await writeFile(
        p,
        text.replace('project: alpine-mirror-test', 'project: alpine-mirror-test\n  builder: vm'),
      );
    }
    const vars = join(dir, 'env', 'tcg.pkrvars.hcl');
    await writeFile(vars, 'accelerator = "tcg"\nssh_timeout = "5m"\nmemory = 1024\n');
    const work = join(dir, 'work');
    const cloud = 'nocloud';
    const bootstrap = 'tiny';
    const r = await runBuild(
      localArgs(env, work, ['3.19', 'x86_64', 'bios', bootstrap, 'vm', cloud], ['--vars', vars]),
      { timeoutMs: 20 * 60_000 },
    );
    const configKey = `3.19-x86_64-bios-${bootstrap}-vm-${cloud}`;
    const imageName = `${cloud}_alpine-${MIRROR_RELEASE}-x86_64-bios-${bootstrap}-r0`;
    const localDir = join(work, 'images', cloud, `${MIRROR_RELEASE}-x86_64-bios-${bootstrap}-vm-${cloud}`);
    if (r.code !== 0) {
      throw new Error(
        `./build local (vm) failed (exit ${r.code}) for ${configKey}:\n${r.stderr.slice(-6000)}`,
      );
    }
    const image: VmTinyImage = {
      arch: 'x86_64',
      firmware: 'bios',
      bootstrap,
      configKey,
      imageName,
      image: join(localDir, `${imageName}.qcow2`),
      format: 'qcow2',
      localDir,
      buildLog: join(localDir, 'build.log'),
      serialLog: join(localDir, 'serial.log'),
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
