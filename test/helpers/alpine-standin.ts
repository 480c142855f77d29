// Real Alpine bits for the tests, and signed stand-ins for what the mirror lacks.
//
//   alpineMirror()            the small real Alpine 3.19 mirror: $ALPINE_MIRROR, else ../shared/alpine-mirror
//                             from the repository root; { reason } (for a skip) when there is none
//   ensureStandinRepo(arch)   a second apk repository, signed by an RSA key made here, with stand-ins built from
//                             Debian's packages (apt-get download + dpkg-deb -x) for what the mirror lacks:
//                               linux-virt  Debian's cloud kernel as /boot/vmlinuz-virt + a pruned module set
//                               mkinitfs    a script making a small busybox initramfs (standin/mkinitfs)
//                               syslinux    (x86_64) Debian's extlinux (+ its glibc loader) and mbr.bin,
//                                           /sbin/update-extlinux (standin/update-extlinux)
//                               grub-efi    GRUB's EFI modules, /usr/sbin/grub-mkconfig (standin/grub-mkconfig)
//                             Cached by input hash under os.tmpdir()/cib-alpine-standin (safe against concurrent
//                             test workers: everything is built aside and renamed into place).
//   makeTestCdn(dir, opts)    a --cdn-url directory: the mirror's v3.19/main and minirootfs (symlinked), the
//                             minirootfs signed with an OpenPGP key the test makes (the mirror has no .asc), and
//                             the stand-in repository as v3.19/cib-standin
//
// The real packages are never re-signed or installed untrusted: apk checks them against Alpine's keys, and the
// stand-ins against the stand-in key, which the build trusts through `repo_keys`.
import { execFile } from 'node:child_process';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { link, mkdir, readdir, readFile, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { promisify } from 'node:util';
import { aarch64Userland } from './alpine-standin-userland.js';
import { type ApkFile, type ApkSigningKey, type BuiltApk, buildApk, buildIndex } from './apk-writer.js';

const run = promisify(execFile);

export const REPO_ROOT = resolve(import.meta.dirname, '..', '..');

/**
 * Why a user other than root cannot run this checkout's ./build (a directory on the way to it is not searchable by
 * others, e.g. a clone under a 0700 `mktemp -d`), or undefined. Tests that run the CLI as such a user skip then.
 */
export function repoUnreachableByOthers(): string | undefined {
  for (let dir = REPO_ROOT; ; dir = dirname(dir)) {
    const mode = statSync(dir).mode & 0o777;
    if (!(mode & 0o001)) {
      return `${dir} is not searchable by other users (mode ${mode.toString(8)}): an unprivileged user cannot run ./build from this checkout`;
    }
    if (dirname(dir) === dir) return undefined;
  }
}
/** Where stand-in repositories and Debian downloads are cached. */
export const STANDIN_CACHE = process.env.CIB_STANDIN_CACHE ?? join(tmpdir(), 'cib-alpine-standin');
const STANDIN_FILES = join(import.meta.dirname, 'standin');

export type AlpineArch = 'x86_64' | 'aarch64';
const DEBIAN_ARCH: Record<AlpineArch, string> = { x86_64: 'amd64', aarch64: 'arm64' };

/** The Alpine release of the mirror's minirootfs and the branch of its repository. */
export const MIRROR_RELEASE = '3.19.4';
export const MIRROR_VERSION = '3.19';

export interface MirrorLookup {
  dir?: string;
  reason?: string;
}

/** The real Alpine mirror: $ALPINE_MIRROR, else ../shared/alpine-mirror (from the repository root) when it exists. */
export function alpineMirror(): MirrorLookup {
  const env = process.env.ALPINE_MIRROR;
  if (env) {
    const dir = resolve(env);
    if (!existsSync(join(dir, 'v3.19', 'main'))) {
      return { reason: `ALPINE_MIRROR=${env} has no v3.19/main (see ../shared/alpine-mirror/README.md)` };
    }
    return { dir };
  }
  const dir = resolve(REPO_ROOT, '..', 'shared', 'alpine-mirror');
  if (existsSync(join(dir, 'v3.19', 'main'))) return { dir };
  return { reason: `no Alpine mirror: set ALPINE_MIRROR (default ${dir} does not exist)` };
}

export interface StandinRepo {
  /** repository base: <dir>/<arch>/APKINDEX.tar.gz */
  dir: string;
  /** the public key's file name (what apk looks for in /etc/apk/keys) */
  keyName: string;
  /** the public key file */
  publicKeyPath: string;
  /** Debian kernel release of the stand-in linux-virt (its /lib/modules directory) */
  kernelRelease: string;
  packages: string[];
}

/** Modules of the stand-in kernel: what a virtual machine needs to find its disks, network and seed. */
const MODULES = [
  'virtio',
  'virtio_ring',
  'virtio_pci',
  'virtio_pci_legacy_dev',
  'virtio_pci_modern_dev',
  'virtio_mmio',
  'virtio_blk',
  'virtio_net',
  'virtio_scsi',
  'virtio-rng',
  'virtio_console',
  'net_failover',
  'failover',
  'fat',
  'vfat',
  'nls_cp437',
  'nls_ascii',
  'nls_utf8',
  'isofs',
  'cdrom',
  'sr_mod',
  'evdev',
  'button',
  'nvme',
  'nvme-core',
  'ena',
  'gve',
];

async function sh(cmd: string, args: string[], opts: { cwd?: string } = {}): Promise<string> {
  const r = await run(cmd, args, { cwd: opts.cwd, maxBuffer: 64 * 1024 * 1024, timeout: 15 * 60_000 });
  return r.stdout;
}

/** apt-get options for another architecture's package lists in a private directory (the host's stay as they are). */
function aptOptions(arch: AlpineArch): string[] {
  if (arch === 'x86_64') return [];
  const d = join(STANDIN_CACHE, `apt-${DEBIAN_ARCH[arch]}`);
  return [
    '-o',
    `APT::Architecture=${DEBIAN_ARCH[arch]}`,
    '-o',
    `APT::Architectures::=${DEBIAN_ARCH[arch]}`,
    '-o',
    `Dir::State::Lists=${d}/lists`,
    '-o',
    `Dir::Cache=${d}/cache`,
    '-o',
    'Debug::NoLocking=1',
  ];
}

/** Download Debian packages (the candidate versions) into a cache directory; returns name -> .deb path. */
async function debianPackages(arch: AlpineArch, names: string[]): Promise<Map<string, string>> {
  const dir = join(STANDIN_CACHE, `debs-${DEBIAN_ARCH[arch]}`);
  await mkdir(dir, { recursive: true });
  const opts = aptOptions(arch);
  if (arch !== 'x86_64') {
    const lists = join(STANDIN_CACHE, `apt-${DEBIAN_ARCH[arch]}`, 'lists');
    if (!existsSync(join(lists, 'lock-done'))) {
      await mkdir(join(lists, 'partial'), { recursive: true });
      await mkdir(join(STANDIN_CACHE, `apt-${DEBIAN_ARCH[arch]}`, 'cache', 'archives', 'partial'), {
        recursive: true,
      });
      await sh('apt-get', [...opts, '-qq', 'update']);
      await writeFile(join(lists, 'lock-done'), '');
    }
  }
  const have = async () => {
    const out = new Map<string, string>();
    for (const f of await readdir(dir)) {
      const n = f.split('_')[0];
      if (n && f.endsWith('.deb') && names.includes(n)) out.set(n, join(dir, f));
    }
    return out;
  };
  let found = await have();
  const missing = names.filter((n) => !found.has(n));
  if (missing.length) {
    // download aside, then move in: concurrent workers never see a half-written .deb
    const part = await mkdirTemp(dir);
    await sh('apt-get', [...opts, '-qq', 'download', ...missing], { cwd: part });
    for (const f of await readdir(part)) await rename(join(part, f), join(dir, f));
    await rm(part, { recursive: true, force: true });
    found = await have();
  }
  for (const n of names) if (!found.has(n)) throw new Error(`apt-get download ${n} gave no .deb`);
  return found;
}

async function mkdirTemp(parent: string): Promise<string> {
  const d = join(parent, `.part-${process.pid}-${Math.random().toString(36).slice(2)}`);
  await mkdir(d, { recursive: true });
  return d;
}

async function extractDeb(deb: string, into: string): Promise<void> {
  await mkdir(into, { recursive: true });
  await sh('dpkg-deb', ['-x', deb, into]);
}

/** Regular files and symlinks under `root`/`sub` as ApkFiles at `dest` + their path below `sub`. */
async function treeFiles(
  root: string,
  sub: string,
  dest: string,
  keep: (rel: string) => boolean = () => true,
): Promise<ApkFile[]> {
  const out: ApkFile[] = [];
  const base = join(root, sub);
  const walk = async (dir: string) => {
    for (const e of await readdir(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      const rel = relative(base, p);
      if (e.isDirectory()) await walk(p);
      else if (!keep(rel)) continue;
      else if (e.isSymbolicLink()) {
        const { readlink } = await import('node:fs/promises');
        out.push({ path: join(dest, rel), mode: 0o777, symlink: await readlink(p) });
      } else if (e.isFile()) {
        out.push({ path: join(dest, rel), mode: 0o644, data: await readFile(p) });
      }
    }
  };
  await walk(base);
  return out;
}

/** "6.1.192-2" -> "6.1.192-r2" (apk's version syntax) */
function apkVersion(debian: string): string {
  const m = /^(?:\d+:)?(\d+(?:\.\d+)*)/.exec(debian);
  return `${m?.[1] ?? '0'}-r0`;
}

async function debVersion(deb: string): Promise<string> {
  return (await sh('dpkg-deb', ['-f', deb, 'Version'])).trim();
}

/** The ELF .modinfo `depends=` of a kernel module, to pull in what the selected modules need. */
function moduleDepends(ko: Buffer): string[] {
  const m = /depends=([^\0]*)\0/.exec(ko.toString('latin1'));
  return m?.[1] ? m[1].split(',').filter(Boolean) : [];
}

async function buildPackages(
  arch: AlpineArch,
  work: string,
  builddate: number,
): Promise<{ pkgs: BuiltApk[]; kver: string }> {
  const darch = DEBIAN_ARCH[arch];
  const meta = await debianPackages(arch, [`linux-image-cloud-${darch}`]);
  const depends = await sh('dpkg-deb', ['-f', meta.get(`linux-image-cloud-${darch}`)!, 'Depends']);
  const kpkg = /(linux-image-[^\s,(]+)/.exec(depends)?.[1];
  if (!kpkg) throw new Error(`linux-image-cloud-${darch}: no kernel package in Depends: ${depends}`);
  const names = [
    kpkg,
    `grub-efi-${darch}-bin`,
    ...(arch === 'x86_64' ? ['extlinux', 'syslinux-common', 'libc6'] : []),
  ];
  const debs = await debianPackages(arch, names);
  for (const [n, deb] of debs) await extractDeb(deb, join(work, n));
  const pkgs: BuiltApk[] = [];
  const key = await standinKey();

  // ---- linux-virt ----
  const kroot = join(work, kpkg);
  const kver = (await readdir(join(kroot, 'lib', 'modules')))[0]!;
  const mdir = join(kroot, 'lib', 'modules', kver);
  const all = new Map<string, string>(); // module name -> path below mdir
  const walk = async (d: string) => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if (/\.ko(\.xz|\.zst)?$/.test(e.name))
        all.set(e.name.replace(/\.ko.*$/, '').replaceAll('-', '_'), relative(mdir, p));
    }
  };
  await walk(join(mdir, 'kernel'));
  const chosen = new Set<string>();
  const want = [...MODULES.map((m) => m.replaceAll('-', '_'))];
  while (want.length) {
    const m = want.pop()!;
    if (chosen.has(m) || !all.has(m)) continue;
    chosen.add(m);
    want.push(...moduleDepends(await readFile(join(mdir, all.get(m)!))).map((d) => d.replaceAll('-', '_')));
  }
  const kfiles: ApkFile[] = [
    { path: 'boot/vmlinuz-virt', mode: 0o644, data: await readFile(join(kroot, 'boot', `vmlinuz-${kver}`)) },
    { path: 'boot/config-virt', mode: 0o644, data: await readFile(join(kroot, 'boot', `config-${kver}`)) },
    { path: 'usr/share/kernel/virt/kernel.release', mode: 0o644, data: Buffer.from(`${kver}\n`) },
  ];
  for (const f of ['modules.builtin', 'modules.order', 'modules.builtin.modinfo']) {
    if (existsSync(join(mdir, f))) {
      kfiles.push({ path: `lib/modules/${kver}/${f}`, mode: 0o644, data: await readFile(join(mdir, f)) });
    }
  }
  for (const m of [...chosen].sort()) {
    const rel = all.get(m)!;
    kfiles.push({ path: `lib/modules/${kver}/${rel}`, mode: 0o644, data: await readFile(join(mdir, rel)) });
  }
  pkgs.push(
    buildApk(
      {
        name: 'linux-virt',
        version: apkVersion(await debVersion(debs.get(kpkg)!)),
        arch,
        description: `stand-in: Debian ${kpkg} with ${chosen.size} modules`,
        depends: ['busybox', 'initramfs-generator'],
        files: kfiles,
        scripts: { 'post-install': `#!/bin/sh\ndepmod ${kver} 2>/dev/null || true\nexit 0\n` },
        builddate,
      },
      key,
    ),
  );

  // ---- mkinitfs ----
  const features: ApkFile[] = [
    {
      path: 'etc/mkinitfs/mkinitfs.conf',
      mode: 0o644,
      data: Buffer.from('features="ata base ide scsi usb virtio ext4"\n'),
    },
  ];
  for (const f of ['base', 'virtio', 'ext4', 'nvme', 'ena', 'gve', 'scsi', 'ata', 'ide', 'usb']) {
    features.push({ path: `etc/mkinitfs/features.d/${f}.modules`, mode: 0o644, data: Buffer.from('') });
  }
  pkgs.push(
    buildApk(
      {
        name: 'mkinitfs',
        version: '3.9.1-r0',
        arch,
        description: 'stand-in: a small busybox initramfs generator',
        depends: ['busybox'],
        provides: ['initramfs-generator=3.9.1-r0'],
        files: [
          { path: 'sbin/mkinitfs', mode: 0o755, data: await readFile(join(STANDIN_FILES, 'mkinitfs')) },
          ...features,
        ],
        builddate,
      },
      key,
    ),
  );

  // ---- syslinux (BIOS, x86_64) ----
  if (arch === 'x86_64') {
    const ext = join(work, 'extlinux');
    const libc = join(work, 'libc6', 'lib', 'x86_64-linux-gnu');
    const glibcDir = 'usr/lib/syslinux-standin';
    const files: ApkFile[] = [
      {
        path: `${glibcDir}/extlinux`,
        mode: 0o755,
        data: await readFile(join(ext, 'usr', 'bin', 'extlinux')),
      },
      {
        path: `${glibcDir}/ld-linux-x86-64.so.2`,
        mode: 0o755,
        data: await readFile(join(libc, 'ld-linux-x86-64.so.2')),
      },
      { path: `${glibcDir}/libc.so.6`, mode: 0o755, data: await readFile(join(libc, 'libc.so.6')) },
      {
        path: 'sbin/extlinux',
        mode: 0o755,
        data: Buffer.from(
          `#!/bin/sh\n# stand-in: Debian's extlinux through its own glibc loader\nexec /${glibcDir}/ld-linux-x86-64.so.2 --library-path /${glibcDir} /${glibcDir}/extlinux "$@"\n`,
        ),
      },
      {
        path: 'sbin/update-extlinux',
        mode: 0o755,
        data: await readFile(join(STANDIN_FILES, 'update-extlinux')),
      },
      {
        path: 'etc/update-extlinux.conf',
        mode: 0o644,
        data: Buffer.from(
          'overwrite=1\nvesa_menu=0\ndefault_kernel_opts="quiet"\nmodules=sd-mod,usb-storage,ext4\nroot=\nverbose=0\nhidden=1\ntimeout=3\ndefault=virt\nserial_port=\nserial_baud=115200\nxen_opts=dom0_mem=384M\npassword=\n',
        ),
      },
    ];
    for (const b of ['mbr.bin', 'gptmbr.bin', 'altmbr.bin']) {
      files.push({
        path: `usr/share/syslinux/${b}`,
        mode: 0o644,
        data: await readFile(join(ext, 'usr', 'lib', 'EXTLINUX', b)),
      });
    }
    for (const c of ['ldlinux.c32', 'libcom32.c32', 'libutil.c32', 'menu.c32']) {
      const p = join(work, 'syslinux-common', 'usr', 'lib', 'syslinux', 'modules', 'bios', c);
      if (existsSync(p))
        files.push({ path: `usr/share/syslinux/${c}`, mode: 0o644, data: await readFile(p) });
    }
    pkgs.push(
      buildApk(
        {
          name: 'syslinux',
          version: apkVersion(await debVersion(debs.get('extlinux')!)),
          arch,
          description: "stand-in: Debian's extlinux and syslinux boot sectors",
          depends: ['busybox'],
          files,
          builddate,
        },
        key,
      ),
    );
  }

  // ---- grub-efi ----
  const gdir = arch === 'x86_64' ? 'x86_64-efi' : 'arm64-efi';
  const grubFiles = await treeFiles(
    join(work, `grub-efi-${darch}-bin`),
    join('usr', 'lib', 'grub', gdir),
    join('usr', 'lib', 'grub', gdir),
    (rel) => /\.(mod|lst|img|sh)$/.test(rel) && !rel.includes('/'),
  );
  grubFiles.push({
    path: 'usr/sbin/grub-mkconfig',
    mode: 0o755,
    data: await readFile(join(STANDIN_FILES, 'grub-mkconfig')),
  });
  pkgs.push(
    buildApk(
      {
        name: 'grub-efi',
        version: apkVersion(await debVersion(debs.get(`grub-efi-${darch}-bin`)!)),
        arch,
        description: `stand-in: GRUB's ${gdir} modules and grub-mkconfig`,
        files: grubFiles,
        builddate,
      },
      key,
    ),
  );
  // aarch64: the mirror has no aarch64 package, so the tiny-cloud userland comes from here too
  // (alpine-standin-userland.ts: stand-ins from Debian's arm64 packages + Alpine's own noarch packages)
  if (arch === 'aarch64') {
    const mirror = alpineMirror().dir;
    if (!mirror) throw new Error(alpineMirror().reason);
    pkgs.push(
      ...(await aarch64Userland(join(work, 'userland-work'), {
        debs: (n) => debianPackages(arch, n),
        extractDeb,
        key,
        builddate,
        mirror,
      })),
    );
  }
  return { pkgs, kver };
}

let keyPromise: Promise<ApkSigningKey & { publicPem: string }> | undefined;

/** The stand-in repository's RSA key: made once per cache directory, shared by concurrent workers. */
export function standinKey(): Promise<ApkSigningKey & { publicPem: string }> {
  keyPromise ??= (async () => {
    const dir = join(STANDIN_CACHE, 'key');
    await mkdir(dir, { recursive: true });
    const priv = join(dir, 'standin.rsa');
    if (!existsSync(priv)) {
      const { privateKey, publicKey } = generateKeyPairSync('rsa', {
        modulusLength: 2048,
        privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
        publicKeyEncoding: { type: 'spki', format: 'pem' },
      });
      const tmp = join(dir, `.tmp-${process.pid}`);
      await writeFile(`${tmp}.pub`, publicKey);
      await writeFile(tmp, privateKey, { mode: 0o600 });

      // first writer wins: link() fails when another worker already put its key in place
      try {
        await link(`${tmp}.pub`, join(dir, 'standin.rsa.pub'));
        await link(tmp, priv);
      } catch {
        // another worker's key
      }
      await rm(tmp, { force: true });
      await rm(`${tmp}.pub`, { force: true });
      for (let i = 0; i < 50 && !existsSync(priv); i++) await new Promise((r) => setTimeout(r, 100));
    }
    const publicPem = await readFile(join(dir, 'standin.rsa.pub'), 'utf8');
    // a fixed name (overlays/alpine-mirror's repo_keys names the file); one key per cache directory
    return { name: STANDIN_KEY_NAME, privatePem: await readFile(priv, 'utf8'), publicPem };
  })();
  return keyPromise;
}

async function inputsHash(arch: AlpineArch): Promise<string> {
  const h = createHash('sha256').update(arch);
  for (const f of ['alpine-standin.ts', 'alpine-standin-userland.ts', 'apk-writer.ts'])
    h.update(await readFile(join(import.meta.dirname, f)));
  for (const f of (await readdir(STANDIN_FILES)).sort())
    h.update(f).update(await readFile(join(STANDIN_FILES, f)));
  return h.digest('hex').slice(0, 16);
}

/** The stand-in key's file name (what .SIGN.RSA.<name> and /etc/apk/keys/<name> say). */
export const STANDIN_KEY_NAME = 'cib-test-standin.rsa.pub';

/** Fixed build date of the stand-in packages (reproducible repositories). */
const STANDIN_BUILDDATE = 1_700_000_000;

/**
 * The signed stand-in repository for `arch`, built once per input hash (about 10 s cold; Debian's archive is
 * needed for the first build) and then reused.
 */
export async function ensureStandinRepo(arch: AlpineArch): Promise<StandinRepo> {
  const key = await standinKey();
  const root = join(
    STANDIN_CACHE,
    `repo-${createHash('sha256').update(key.publicPem).digest('hex').slice(0, 8)}`,
  );
  const hash = await inputsHash(arch);
  const dir = join(root, hash);
  const archDir = join(dir, arch);
  const pubPath = join(dir, key.name);
  if (!existsSync(join(archDir, 'APKINDEX.tar.gz'))) {
    await mkdir(dir, { recursive: true });
    const work = await mkdirTemp(dir);
    try {
      const { pkgs, kver } = await buildPackages(arch, join(work, 'debs'), STANDIN_BUILDDATE);
      const out = join(work, arch);
      await mkdir(out);
      for (const p of pkgs) await writeFile(join(out, p.fileName), p.buf);
      await writeFile(
        join(out, 'APKINDEX.tar.gz'),
        buildIndex(pkgs, key, 'cloud-image-builder test stand-ins', STANDIN_BUILDDATE),
      );
      await writeFile(join(out, '.kernel-release'), kver);
      try {
        await rename(out, archDir);
      } catch {
        // another worker finished first: its copy is the same
      }
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  }
  if (!existsSync(pubPath)) {
    await writeFile(`${pubPath}.${process.pid}`, key.publicPem);
    await rename(`${pubPath}.${process.pid}`, pubPath);
  }
  const packages = (await readdir(archDir)).filter((f) => f.endsWith('.apk')).sort();
  return {
    dir,
    keyName: key.name,
    publicKeyPath: pubPath,
    kernelRelease: (await readFile(join(archDir, '.kernel-release'), 'utf8')).trim(),
    packages,
  };
}

export interface TestCdn {
  /** for --cdn-url */
  cdnUrl: string;
  dir: string;
  /** the minirootfs in the CDN directory */
  minirootfs: string;
}

/**
 * A CDN-shaped directory for --cdn-url: v3.19/main -> the mirror's, v3.19/cib-standin -> the stand-in repository,
 * v3.19/releases/<arch>/ with the mirror's minirootfs and checksums (symlinked) and an OpenPGP signature made by
 * `sign` (or a forged/missing one for the negative tests).
 */
export async function makeTestCdn(
  dir: string,
  opts: {
    mirror: string;
    arch: AlpineArch;
    standin?: StandinRepo;
    sign: (file: string) => Promise<string>;
    signature?: 'good' | 'none' | 'forged';
  },
): Promise<TestCdn> {
  const v = join(dir, `v${MIRROR_VERSION}`);
  const rel = join(v, 'releases', opts.arch);
  await mkdir(rel, { recursive: true });
  if (!existsSync(join(v, 'main')))
    await symlink(join(opts.mirror, `v${MIRROR_VERSION}`, 'main'), join(v, 'main'));
  if (opts.standin && !existsSync(join(v, 'cib-standin'))) {
    await symlink(opts.standin.dir, join(v, 'cib-standin'));
  }
  const name = `alpine-minirootfs-${MIRROR_RELEASE}-${opts.arch}.tar.gz`;
  const src = join(opts.mirror, `v${MIRROR_VERSION}`, 'releases', opts.arch, name);
  for (const ext of ['', '.sha256', '.sha512']) {
    await rm(join(rel, name + ext), { force: true });
    await symlink(src + ext, join(rel, name + ext));
  }
  const asc = join(rel, `${name}.asc`);
  await rm(asc, { force: true });
  const mode = opts.signature ?? 'good';
  if (mode === 'good') await writeFile(asc, await opts.sign(src));
  else if (mode === 'forged') {
    // a real signature by the trusted key, over other bytes
    const other = join(dir, '.forged-data');
    await writeFile(other, 'not the minirootfs');
    await writeFile(asc, await opts.sign(other));
  }
  return { cdnUrl: `file://${dir}`, dir, minirootfs: join(rel, name) };
}

/**
 * A repository signed by a key nobody trusts (its index and its one package, `cib-untrusted`): apk must refuse
 * it. (apk 2 checks a repository package through the signed index that names its checksum, so the index's
 * signature is what decides.)
 */
export async function makeUntrustedRepo(dir: string, arch: AlpineArch): Promise<string> {
  const { privateKey } = generateKeyPairSync('rsa', {
    modulusLength: 2048,
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
    publicKeyEncoding: { type: 'spki', format: 'pem' },
  });
  const pkg = buildApk(
    {
      name: 'cib-untrusted',
      version: '1.0-r0',
      arch,
      description: 'signed by a key nobody trusts',
      files: [{ path: 'etc/cib-untrusted', mode: 0o644, data: Buffer.from('untrusted\n') }],
      builddate: STANDIN_BUILDDATE,
    },
    { name: 'cib-unknown.rsa.pub', privatePem: privateKey },
  );
  const unknown = { name: 'cib-unknown.rsa.pub', privatePem: privateKey };
  await mkdir(join(dir, arch), { recursive: true });
  await writeFile(join(dir, arch, pkg.fileName), pkg.buf);
  await writeFile(
    join(dir, arch, 'APKINDEX.tar.gz'),
    buildIndex([pkg], unknown, 'untrusted package', STANDIN_BUILDDATE),
  );
  return dir;
}
