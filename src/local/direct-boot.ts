// Direct kernel boot of the builder VM, as alpine-cloud-images does it: the kernel and initramfs are taken out
// of the verified builder ISO (xorriso, no mount) and handed to QEMU (-kernel/-initrd/-append); the ISO stays
// attached as the boot medium the initramfs installs its packages from. An apkovl (Alpine's overlay tarball,
// served by Packer's HTTP server and named by `apkovl=` on the kernel command line, fetched by the initramfs
// after `ip=dhcp`) brings up networking and sshd with a one-time key. Nothing is typed at a console and
// nothing waits a fixed time: the builder is ready when SSH answers.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { execa } from 'execa';
import { UserError } from '../util/errors.js';
import { writeFileAtomic } from '../util/fs.js';

/** Where Alpine's virt ISO keeps its kernel and initramfs (qemu.boot_kernel / qemu.boot_initrd override). */
export const DEFAULT_BOOT_KERNEL = '/boot/vmlinuz-virt';
export const DEFAULT_BOOT_INITRD = '/boot/initramfs-virt';
/** The apkovl's file name in Packer's http_directory. */
export const APKOVL_NAME = 'builder.apkovl.tar.gz';

export interface BootFiles {
  kernel: string;
  initrd: string;
}

/**
 * Extract the kernel and initramfs from the ISO into `destDir` (once per ISO digest: a stamp file holds the
 * digest the files came from). The ISO must already be verified.
 */
export async function extractBootFiles(
  iso: { path: string; digest: string },
  destDir: string,
  inIso: { kernel: string; initrd: string } = { kernel: DEFAULT_BOOT_KERNEL, initrd: DEFAULT_BOOT_INITRD },
): Promise<BootFiles> {
  const files: BootFiles = { kernel: join(destDir, 'vmlinuz'), initrd: join(destDir, 'initramfs') };
  const stamp = join(destDir, 'source');
  const want = `${iso.digest} ${inIso.kernel} ${inIso.initrd}\n`;
  try {
    if ((await readFile(stamp, 'utf8')) === want) {
      await Promise.all([stat(files.kernel), stat(files.initrd)]);
      return files;
    }
  } catch {
    // not extracted yet
  }
  const tmp = `${destDir}.tmp-${process.pid}`;
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true });
  try {
    let r: Awaited<ReturnType<typeof execa>>;
    try {
      r = await execa(
        'xorriso',
        [
          '-osirrox',
          'on',
          '-indev',
          iso.path,
          '-extract',
          inIso.kernel,
          join(tmp, 'vmlinuz'),
          '-extract',
          inIso.initrd,
          join(tmp, 'initramfs'),
        ],
        { reject: false, all: true, stdin: 'ignore' },
      );
    } catch (err) {
      throw new UserError(`xorriso: ${(err as Error).message}`);
    }
    if (r.exitCode === undefined || (r.failed && /ENOENT/.test(String(r.message)))) {
      throw new UserError(
        'xorriso is not installed (needed to take the kernel out of the builder ISO; Debian: apt-get install xorriso)',
      );
    }
    if (r.exitCode !== 0) {
      const out = String(r.all ?? '')
        .split('\n')
        .filter((l) => /FAILURE|SORRY|not found|Cannot/i.test(l))
        .slice(-3)
        .join(' ');
      throw new UserError(
        `cannot take ${inIso.kernel} and ${inIso.initrd} out of ${iso.path} (xorriso exit ${r.exitCode})${out ? `: ${out}` : ''}; set qemu.boot_kernel / qemu.boot_initrd to the paths inside the ISO`,
      );
    }
    await writeFileAtomic(join(tmp, 'source'), want);
    await rm(destDir, { recursive: true, force: true });
    await rename(tmp, destDir);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  return files;
}

export interface OneTimeKey {
  /** OpenSSH private key format, for Packer's ssh_private_key_file (never leaves the build directory) */
  privatePem: string;
  /** "ssh-ed25519 AAAA… comment", for authorized_keys */
  publicOpenSsh: string;
}

function sshString(b: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(b.length);
  return Buffer.concat([len, b]);
}

/** A fresh ed25519 key pair for one builder VM, in OpenSSH's own formats (read by Packer and ssh alike). */
export function oneTimeKey(comment = 'cloud-image-builder one-time builder key'): OneTimeKey {
  const { privateKey } = generateKeyPairSync('ed25519');
  const jwk = privateKey.export({ format: 'jwk' });
  const pub = Buffer.from(String(jwk.x), 'base64url');
  const seed = Buffer.from(String(jwk.d), 'base64url');
  const type = Buffer.from('ssh-ed25519');
  const blob = Buffer.concat([sshString(type), sshString(pub)]);
  // openssh-key-v1, unencrypted: checkints, the key, the comment, padding to the 8-byte "none" cipher block
  const check = randomBytes(4);
  let priv = Buffer.concat([
    check,
    check,
    sshString(type),
    sshString(pub),
    sshString(Buffer.concat([seed, pub])),
    sshString(Buffer.from(comment)),
  ]);
  const pad = (8 - (priv.length % 8)) % 8;
  priv = Buffer.concat([priv, Buffer.from(Array.from({ length: pad }, (_, i) => i + 1))]);
  const none = sshString(Buffer.from('none'));
  const count = Buffer.alloc(4);
  count.writeUInt32BE(1);
  const body = Buffer.concat([
    Buffer.from('openssh-key-v1\0'),
    none,
    none,
    sshString(Buffer.alloc(0)),
    count,
    sshString(blob),
    sshString(priv),
  ]);
  const b64 = body.toString('base64').replace(/.{1,70}/g, '$&\n');
  return {
    privatePem: `-----BEGIN OPENSSH PRIVATE KEY-----\n${b64}-----END OPENSSH PRIVATE KEY-----\n`,
    publicOpenSsh: `ssh-ed25519 ${blob.toString('base64')} ${comment}`,
  };
}

export interface TarEntry {
  path: string;
  type: 'file' | 'dir' | 'symlink';
  mode: number;
  content?: string;
  target?: string;
}

function octal(n: number, width: number): string {
  return `${n.toString(8).padStart(width - 1, '0')}\0`;
}

/** A ustar archive (root-owned entries, fixed mtime: the same input gives the same bytes). */
export function tar(entries: readonly TarEntry[], mtime = 0): Buffer {
  const blocks: Buffer[] = [];
  for (const e of entries) {
    const name = e.type === 'dir' && !e.path.endsWith('/') ? `${e.path}/` : e.path;
    if (Buffer.byteLength(name) > 100) throw new Error(`tar: path too long: ${name}`);
    const body = e.type === 'file' ? Buffer.from(e.content ?? '') : Buffer.alloc(0);
    const h = Buffer.alloc(512);
    h.write(name, 0);
    h.write(octal(e.mode & 0o7777, 8), 100);
    h.write(octal(0, 8), 108);
    h.write(octal(0, 8), 116);
    h.write(octal(body.length, 12), 124);
    h.write(octal(mtime, 12), 136);
    h.write('        ', 148);
    h.write(e.type === 'file' ? '0' : e.type === 'dir' ? '5' : '2', 156);
    if (e.type === 'symlink') h.write(e.target ?? '', 157);
    h.write('ustar\0', 257);
    h.write('00', 263);
    h.write('root', 265);
    h.write('root', 297);
    let sum = 0;
    for (const b of h) sum += b;
    h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
    blocks.push(h, body);
    const pad = (512 - (body.length % 512)) % 512;
    if (pad) blocks.push(Buffer.alloc(pad));
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

export interface ApkovlOptions {
  authorizedKey: string;
  hostname?: string;
}

/**
 * The builder's apkovl: DHCP on eth0, sshd (ed25519 host key only: RSA key generation takes half a minute
 * under TCG) with the one-time key for root, and Alpine's default boot services
 * (etc/.default_boot_services), since the initramfs adds those only when the apkovl asks for them.
 */
export function builderApkovl(o: ApkovlOptions): Buffer {
  const entries: TarEntry[] = [
    { path: 'etc', type: 'dir', mode: 0o755 },
    { path: 'etc/.default_boot_services', type: 'file', mode: 0o644, content: '' },
    { path: 'etc/hostname', type: 'file', mode: 0o644, content: `${o.hostname ?? 'builder'}\n` },
    { path: 'etc/network', type: 'dir', mode: 0o755 },
    {
      path: 'etc/network/interfaces',
      type: 'file',
      mode: 0o644,
      content: 'auto lo\niface lo inet loopback\n\nauto eth0\niface eth0 inet dhcp\n',
    },
    { path: 'etc/apk', type: 'dir', mode: 0o755 },
    // installed from the boot medium's repository by the initramfs
    { path: 'etc/apk/world', type: 'file', mode: 0o644, content: 'alpine-base\nopenssh\n' },
    { path: 'etc/conf.d', type: 'dir', mode: 0o755 },
    { path: 'etc/conf.d/sshd', type: 'file', mode: 0o644, content: 'key_types_to_generate="ed25519"\n' },
    { path: 'etc/runlevels', type: 'dir', mode: 0o755 },
    { path: 'etc/runlevels/default', type: 'dir', mode: 0o755 },
    {
      path: 'etc/runlevels/default/networking',
      type: 'symlink',
      mode: 0o777,
      target: '/etc/init.d/networking',
    },
    { path: 'etc/runlevels/default/sshd', type: 'symlink', mode: 0o777, target: '/etc/init.d/sshd' },
    { path: 'root', type: 'dir', mode: 0o700 },
    { path: 'root/.ssh', type: 'dir', mode: 0o700 },
    { path: 'root/.ssh/authorized_keys', type: 'file', mode: 0o600, content: `${o.authorizedKey}\n` },
  ];
  return gzipSync(tar(entries), { level: 9 });
}

/** Console device of the builder's kernel per arch. */
const CONSOLE: Record<string, string> = { x86_64: 'ttyS0,115200', aarch64: 'ttyAMA0,115200' };

/**
 * The builder kernel's command line: the ISO's own options plus networking in the initramfs and the apkovl
 * URL. Packer fills in {{ .HTTPIP }} and {{ .HTTPPort }} (its HTTP server, as the VM sees the host).
 */
export function builderCmdline(arch: string, extra = ''): string {
  return [
    'modules=loop,squashfs,sd-mod,usb-storage',
    'modloop=/boot/modloop-virt',
    `console=${CONSOLE[arch] ?? 'ttyS0,115200'}`,
    'ip=dhcp',
    `apkovl=http://{{ .HTTPIP }}:{{ .HTTPPort }}/${APKOVL_NAME}`,
    extra.trim(),
  ]
    .filter(Boolean)
    .join(' ');
}

export interface BuilderBoot {
  /** QEMU arguments for the direct kernel boot */
  qemuargs: string[][];
  /** Packer's http_directory (holds only the apkovl: public data) */
  httpDirectory: string;
  /** Packer's ssh_private_key_file (mode 0600, removed with the build directory) */
  sshKeyFile: string;
}

/** Write the apkovl and the one-time key into the build directory; return what the template needs. */
export async function prepareBuilderBoot(
  buildDir: string,
  boot: BootFiles,
  arch: string,
  cmdlineExtra = '',
): Promise<BuilderBoot> {
  const key = oneTimeKey();
  const httpDirectory = join(buildDir, 'http');
  const sshKeyFile = join(buildDir, 'builder-key');
  await writeFileAtomic(
    join(httpDirectory, APKOVL_NAME),
    builderApkovl({ authorizedKey: key.publicOpenSsh }),
  );
  await writeFileAtomic(sshKeyFile, key.privatePem, 0o600);
  return {
    qemuargs: [
      ['-kernel', boot.kernel],
      ['-initrd', boot.initrd],
      ['-append', builderCmdline(arch, cmdlineExtra)],
    ],
    httpDirectory,
    sshKeyFile,
  };
}
