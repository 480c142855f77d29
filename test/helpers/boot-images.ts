// Small bootable x86_64 disks with a real Alpine 3.19 userland for the boot-test tests, built once per input
// (test/fixtures/boottest/make-alpine-image.sh: the mirror's packages, Debian's cloud kernel) and cached by input
// hash under os.tmpdir()/cib-boottest-images, so every test file and every run shares them (about 10 s each).
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { onPath as has } from '../../src/util/on-path.js';
import { alpineMirror, REPO_ROOT } from './alpine-standin.js';

const run = promisify(execFile);

export const BOOT_IMAGE_CACHE = process.env.CIB_BOOT_IMAGE_CACHE ?? join(tmpdir(), 'cib-boottest-images');
const SCRIPT = join(REPO_ROOT, 'test', 'fixtures', 'boottest', 'make-alpine-image.sh');

export type ImageVariant = 'trimmed' | 'full' | 'full-parallel' | 'nosshd' | 'corrupt-kernel';

export interface BootImageSpec {
  firmware: 'bios' | 'uefi';
  cloud: 'nocloud' | 'aws';
  variant?: ImageVariant;
}

/** Why the boot-test images cannot be made here, or undefined when they can. */
export async function bootImagesUnavailable(): Promise<string | undefined> {
  if (process.getuid?.() !== 0)
    return 'needs root (chroot for depmod and tiny-cloud --enable, loop mount for extlinux)';
  const m = alpineMirror();
  if (!m.dir) return m.reason ?? 'no Alpine mirror';
  const missing: string[] = [];
  for (const c of [
    'qemu-system-x86_64',
    'qemu-img',
    'mke2fs',
    'sfdisk',
    'extlinux',
    'grub-mkstandalone',
    'mkfs.vfat',
    'mcopy',
    'cpio',
    'dpkg-deb',
    'losetup',
    'setpriv',
  ]) {
    if (!(await has(c))) missing.push(c);
  }
  if (!existsSync('/usr/lib/syslinux/mbr/mbr.bin')) missing.push('/usr/lib/syslinux/mbr/mbr.bin (syslinux)');
  if (missing.length) return `missing ${missing.join(', ')} (see .ci/apt-packages.txt)`;
  if (!(await kernelDebCached()) && !(await has('apt-get'))) return 'no cached Debian kernel and no apt-get';
  return undefined;
}

async function kernelDebCached(): Promise<string | undefined> {
  const dir = join(BOOT_IMAGE_CACHE, 'kernel');
  try {
    const f = (await readdir(dir)).find((n) => /^linux-image-.*\.deb$/.test(n));
    return f ? join(dir, f) : undefined;
  } catch {
    return undefined;
  }
}

let kernelDownload: Promise<string> | undefined;

/** Debian's cloud kernel package, downloaded once (apt-get download) and kept in the cache. */
export function kernelDeb(): Promise<string> {
  kernelDownload ??= downloadKernelDeb();
  return kernelDownload;
}

async function downloadKernelDeb(): Promise<string> {
  const cached = await kernelDebCached();
  if (cached) return cached;
  const dir = join(BOOT_IMAGE_CACHE, 'kernel');
  const tmp = join(BOOT_IMAGE_CACHE, `.kernel-${process.pid}`);
  await mkdir(tmp, { recursive: true });
  const { stdout } = await run('apt-cache', ['depends', 'linux-image-cloud-amd64']);
  const pkg = /Depends: (linux-image-\S+)/.exec(stdout)?.[1];
  if (!pkg) throw new Error(`apt-cache: no linux-image dependency of linux-image-cloud-amd64:\n${stdout}`);
  await run('apt-get', ['download', '-q', pkg], { cwd: tmp });
  const deb = (await readdir(tmp)).find((n) => n.endsWith('.deb'));
  if (!deb) throw new Error(`apt-get download ${pkg} left no .deb`);
  await mkdir(dir, { recursive: true });
  await rename(join(tmp, deb), join(dir, deb));
  await rm(tmp, { recursive: true, force: true });
  return join(dir, deb);
}

/** The image for `spec` (image.qcow2), built on first use and cached by the hash of everything that makes it. */
export async function ensureBootImage(spec: BootImageSpec): Promise<string> {
  const variant = spec.variant ?? 'trimmed';
  const mirrorDir = alpineMirror().dir;
  if (!mirrorDir) throw new Error(alpineMirror().reason ?? 'no Alpine mirror');
  const deb = await kernelDeb();
  const h = createHash('sha256');
  h.update(await readFile(SCRIPT));
  h.update(await readFile(join(mirrorDir, 'v3.19', 'main', 'x86_64', 'APKINDEX.tar.gz')));
  h.update(`${deb}\0${spec.firmware}\0${spec.cloud}\0${variant}`);
  const dir = join(
    BOOT_IMAGE_CACHE,
    `${spec.firmware}-${spec.cloud}-${variant}-${h.digest('hex').slice(0, 16)}`,
  );
  const image = join(dir, 'image.qcow2');
  if (existsSync(image)) return image;
  // built aside and renamed into place: concurrent test workers never see half an image
  const tmp = `${dir}.tmp-${process.pid}`;
  await rm(tmp, { recursive: true, force: true });
  await run(SCRIPT, [tmp, spec.firmware, spec.cloud, variant], {
    env: { ...process.env, ALPINE_MIRROR: mirrorDir, KERNEL_DEB: deb },
    maxBuffer: 16 * 1024 * 1024,
    timeout: 5 * 60_000,
  });
  try {
    await rename(tmp, dir);
  } catch {
    // another worker was first
    await rm(tmp, { recursive: true, force: true });
  }
  return image;
}
