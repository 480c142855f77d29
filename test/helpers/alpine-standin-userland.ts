// The aarch64 userland of a tiny-cloud image, for the boot test of aarch64 images built from the test mirror
// (which has Alpine's aarch64 minirootfs but no aarch64 package). Used by ensureStandinRepo('aarch64').
//
// Two kinds of packages go into the stand-in repository's aarch64 index (signed by the stand-in key):
//   - Alpine's own noarch packages from the mirror (alpine-base, tiny-cloud*, busybox-openrc, the *-openrc init
//     scripts, openssh-server-common, ...): the .apk files UNMODIFIED, with their own Alpine signature; their
//     index entries are the mirror's signed APKINDEX entries (the C: checksum of the control segment, which apk
//     checks against the package), only A: says aarch64 (Alpine's aarch64 index names its noarch packages so,
//     and apk fetches <repo>/<A>/<file>). Nothing is re-signed.
//   - stand-ins for Alpine's arch-specific packages, built from Debian's arm64 packages (apt-get download +
//     dpkg-deb -x): glibc programs next to Alpine's musl ones (their loader /lib/ld-linux-aarch64.so.1 and
//     /lib/aarch64-linux-gnu do not collide with musl's /lib/ld-musl-aarch64.so.1). The libraries they need
//     (the ELF DT_NEEDED closure) go into one package, cib-glibc-standin.
//       openrc        Debian's OpenRC 0.45 programs (+ dpkg's start-stop-daemon, which Debian's OpenRC uses) with
//                     Alpine's own init scripts and conf.d (openrc 0.52.1 from the mirror: shell scripts, the
//                     same on every arch; Debian's OpenRC ships almost none)
//       openssh-*     Debian's sshd, ssh-keygen, ssh, sftp-server; sshd's privilege-separation directory is
//                     patched from Debian's /run/sshd to Alpine's /var/empty (same string slot)
//       chrony, dhcpcd, doas (opendoas: reads /etc/doas.conf only, and a PAM stack that permits nopass rules
//                     only), e2fsprogs(-extra), sfdisk, partx, ifupdown-ng, tzdata
//       yx            a POSIX awk stand-in for tiny-cloud's YAML reader (block-style maps and scalars: what a
//                     NoCloud meta-data file holds); the real yx is C and not in Debian
//       alpine-conf, busybox-suid   empty (nothing of them runs in these images)
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { lstat, mkdir, readdir, readFile, readlink } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { promisify } from 'node:util';
import { gunzipSync } from 'node:zlib';
import { type ApkFile, type ApkSigningKey, type BuiltApk, buildApk } from './apk-writer.js';

const run = promisify(execFile);

export interface UserlandTools {
  /** apt-get download (cached) of Debian arm64 packages: name -> .deb */
  debs(names: string[]): Promise<Map<string, string>>;
  extractDeb(deb: string, into: string): Promise<void>;
  key: ApkSigningKey;
  builddate: number;
  /** the real mirror (…/v3.19/main/x86_64 holds the noarch packages) */
  mirror: string;
}

/** Alpine's noarch packages that the tiny-cloud userland needs, from the mirror as they are. */
export const REAL_NOARCH = [
  'alpine-base',
  'alpine-release',
  'busybox-openrc',
  'busybox-mdev-openrc',
  'mdev-conf',
  'libc-utils',
  'chrony-openrc',
  'dhcpcd-openrc',
  'openssh-server-common',
  'openssh-server-common-openrc',
  'tiny-cloud',
  'tiny-cloud-nocloud',
  'tiny-cloud-openrc',
];

const GLIBC = 'cib-glibc-standin';
const LIB_DIRS = ['lib/aarch64-linux-gnu', 'usr/lib/aarch64-linux-gnu'];

/** ELF64 little-endian DT_NEEDED entries (the stand-ins are all arm64 ELF64 LE); [] for anything else. */
export function elfNeeded(b: Buffer): string[] {
  if (b.length < 64 || b.readUInt32BE(0) !== 0x7f454c46 || b[4] !== 2 || b[5] !== 1) return [];
  const shoff = Number(b.readBigUInt64LE(0x28));
  const shentsize = b.readUInt16LE(0x3a);
  const shnum = b.readUInt16LE(0x3c);
  const sections = [];
  for (let i = 0; i < shnum; i++) {
    const o = shoff + i * shentsize;
    sections.push({
      type: b.readUInt32LE(o + 4),
      offset: Number(b.readBigUInt64LE(o + 0x18)),
      size: Number(b.readBigUInt64LE(o + 0x20)),
      link: b.readUInt32LE(o + 0x28),
    });
  }
  const dyn = sections.find((s) => s.type === 6);
  if (!dyn) return [];
  const strtab = sections[dyn.link]!;
  const out: string[] = [];
  for (let o = dyn.offset; o + 16 <= dyn.offset + dyn.size; o += 16) {
    const tag = Number(b.readBigInt64LE(o));
    if (tag === 0) break;
    if (tag === 1) {
      const at = strtab.offset + Number(b.readBigUInt64LE(o + 8));
      out.push(b.toString('latin1', at, b.indexOf(0, at)));
    }
  }
  return out;
}

/** One extracted tree (Debian package contents) as ApkFiles, keeping modes (setuid too) and symlinks. */
async function fromTree(
  root: string,
  paths: string[],
  rename: Record<string, string> = {},
): Promise<ApkFile[]> {
  const out: ApkFile[] = [];
  const add = async (rel: string) => {
    const p = join(root, rel);
    const st = await lstat(p);
    const dest = rename[rel] ?? rel;
    if (st.isSymbolicLink()) out.push({ path: dest, mode: 0o777, symlink: await readlink(p) });
    else if (st.isDirectory()) {
      for (const e of await readdir(p)) await add(posix.join(rel, e));
    } else out.push({ path: dest, mode: st.mode & 0o7777, data: await readFile(p) });
  };
  for (const rel of paths) {
    if (!existsSync(join(root, rel))) throw new Error(`stand-in: ${rel} is not in the Debian packages`);
    await add(rel);
  }
  return out;
}

/** The files of one real Alpine package's data segment (for its arch-independent scripts). */
async function alpineFiles(apk: string, into: string): Promise<string> {
  await mkdir(into, { recursive: true });
  // the three gzip streams; tar -i reads past the first end-of-archive
  await run('tar', ['-xzif', apk, '-C', into]);
  return into;
}

/** The mirror's index entries (one block per package, as signed by Alpine) by package name. */
async function mirrorIndex(mirror: string): Promise<Map<string, string>> {
  const tgz = await readFile(join(mirror, 'v3.19', 'main', 'x86_64', 'APKINDEX.tar.gz'));
  // [signature gzip][index gzip]: gunzip reads every member; the tar entries follow each other
  const tar = gunzipSync(tgz);
  const out = new Map<string, string>();
  let o = 0;
  while (o + 512 <= tar.length) {
    const name = tar.toString('latin1', o, o + 100).replace(/\0.*$/s, '');
    const size = Number.parseInt(
      tar
        .toString('latin1', o + 124, o + 136)
        .replace(/\0.*$/s, '')
        .trim() || '0',
      8,
    );
    if (name === 'APKINDEX') {
      for (const block of tar.toString('utf8', o + 512, o + 512 + size).split('\n\n')) {
        const p = /^P:(.+)$/m.exec(block)?.[1];
        if (p) out.set(p, `${block.trim()}\n`);
      }
    }
    o += 512 + Math.ceil(size / 512) * 512;
  }
  return out;
}

const YX = `#!/bin/sh
# stand-in for yx (tiny-cloud's YAML reader; the real one is C and not in the test mirror for aarch64):
#   yx -f FILE [KEY...]  prints the scalar at KEY... or the keys of the map there (one per line)
# It reads block-style maps with plain or quoted scalars: what a NoCloud meta-data file holds.
file=-
if [ "\${1:-}" = -f ]; then file=$2; shift 2; fi
exec awk -v path="$*" '
function unq(v) {
	if (v ~ /^".*"$/) { v = substr(v, 2, length(v) - 2); gsub(/\\\\"/, "\\"", v) }
	else if (v ~ /^\\047.*\\047$/) { v = substr(v, 2, length(v) - 2); gsub(/\\047\\047/, "\\047", v) }
	return v
}
BEGIN { n = split(path, want, " "); d = 0; found = 0 }
{
	line = $0; sub(/\\r$/, "", line)
	if (line ~ /^[ \\t]*(#.*)?$/ || line ~ /^(---|\\.\\.\\.)/) next
	match(line, /^ */); ind = RLENGTH; body = substr(line, ind + 1)
	if (body ~ /^- /) next
	c = index(body, ":"); if (!c) next
	key = unq(substr(body, 1, c - 1)); val = substr(body, c + 1)
	sub(/^[ \\t]+/, "", val); sub(/[ \\t]+$/, "", val)
	while (d > 0 && sind[d] >= ind) d--
	d++; sind[d] = ind; skey[d] = key
	m = d < n ? d : n
	for (i = 1; i <= m; i++) if (skey[i] != want[i]) next
	if (d == n && val != "") { print unq(val); found = 1; exit }
	if (d == n + 1) { print key; found = 1 }
}
END { exit found ? 0 : 1 }
' "$file"
`;

interface Spec {
  name: string;
  /** the Debian package whose version names the stand-in's (else 1.0-r0) */
  versionOf?: string;
  description: string;
  files: ApkFile[];
  depends?: string[];
  provides?: string[];
  providerPriority?: number;
  scripts?: Partial<Record<'pre-install' | 'post-install', string>>;
}

function apkVersion(debian: string): string {
  const m = /^(?:\d+:)?(\d+(?:\.\d+)*)/.exec(debian);
  return `${m?.[1] ?? '0'}-r0`;
}

const text = (path: string, body: string, mode = 0o644): ApkFile => ({ path, mode, data: Buffer.from(body) });

/** The aarch64 userland packages: stand-ins (signed by the stand-in key) and Alpine's real noarch packages. */
export async function aarch64Userland(work: string, t: UserlandTools): Promise<BuiltApk[]> {
  const names = [
    'openrc',
    'librc1',
    'libeinfo1',
    'dpkg',
    'openssh-server',
    'openssh-client',
    'openssh-sftp-server',
    'ifupdown-ng',
    'opendoas',
    'libpam-modules',
    'e2fsprogs',
    'fdisk',
    'util-linux',
    'chrony',
    'dhcpcd-base',
    'tzdata',
  ];
  const debs = await t.debs(names);
  const root = join(work, 'userland');
  for (const n of names) await t.extractDeb(debs.get(n)!, root);
  const version = async (n: string) =>
    apkVersion((await run('dpkg-deb', ['-f', debs.get(n) ?? libDebs.get(n)!, 'Version'])).stdout.trim());
  const libDebs = new Map<string, string>();

  // Alpine's own OpenRC init scripts and configuration (arch-independent shell), from the mirror's package
  const aorc = await alpineFiles(
    join(t.mirror, 'v3.19', 'main', 'x86_64', 'openrc-0.52.1-r2.apk'),
    join(work, 'alpine-openrc'),
  );
  const alpineScripts = await fromTree(aorc, ['etc/init.d', 'etc/conf.d', 'etc/rc.conf', 'etc/local.d']);

  // sshd: Debian's privilege-separation directory /run/sshd (gone after every boot on Alpine, where nothing
  // makes it) becomes Alpine's /var/empty, in the same 16-byte string slot
  const sshdPath = join(root, 'usr/sbin/sshd');
  const sshd = await readFile(sshdPath);
  const from = Buffer.from('/run/sshd\0\0\0\0\0\0\0', 'latin1');
  const at = sshd.indexOf(from);
  if (at < 0 || sshd.indexOf(from, at + 1) >= 0)
    throw new Error('stand-in sshd: /run/sshd slot not found once');
  Buffer.from('/var/empty\0', 'latin1').copy(sshd, at);

  const specs: Spec[] = [
    {
      name: 'openrc',
      versionOf: 'openrc',
      description: "stand-in: Debian's OpenRC programs with Alpine's init scripts",
      files: [
        ...(
          await fromTree(root, [
            'lib/rc',
            'sbin/openrc',
            'sbin/openrc-run',
            'sbin/rc-service',
            'sbin/rc-update',
            'sbin/rc-sstat',
            'sbin/supervise-daemon',
            'sbin/start-stop-daemon',
            'bin/rc-status',
          ])
        ).filter((f) => f.path !== 'lib/rc/version'),
        ...alpineScripts,
        text('lib/rc/version', '0.45.2 (Debian programs; Alpine 0.52.1 scripts)\n'),
        // Debian's lsb2rcconf reads them for every service (Debian's insserv package ships them)
        text('etc/insserv.conf', "# stand-in: read by Debian OpenRC's lsb2rcconf; nothing to map\n"),
        { path: 'etc/insserv.conf.d', mode: 0o755, dir: true },
        ...['boot', 'default', 'nonetwork', 'shutdown', 'sysinit'].map((l) => ({
          path: `etc/runlevels/${l}`,
          mode: 0o755,
          dir: true,
        })),
      ],
      depends: [GLIBC, 'ifupdown-any', '/bin/sh'],
    },
    {
      name: 'ifupdown-ng',
      versionOf: 'ifupdown-ng',
      description: "stand-in: Debian's ifupdown-ng",
      files: await fromTree(root, [
        'sbin/ifupdown',
        'sbin/ifup',
        'sbin/ifdown',
        'sbin/ifquery',
        'sbin/ifparse',
        'sbin/ifctrstat',
        'usr/libexec/ifupdown-ng',
        'etc/network/ifupdown-ng.conf',
      ]),
      depends: [GLIBC],
      provides: ['ifupdown-any'],
      // as Alpine's ifupdown-ng: the provider apk picks for openrc's unversioned ifupdown-any
      providerPriority: 900,
    },
    {
      name: 'openssh-keygen',
      versionOf: 'openssh-server',
      description: "stand-in: Debian's ssh-keygen",
      files: await fromTree(root, ['usr/bin/ssh-keygen']),
      depends: [GLIBC],
    },
    {
      name: 'openssh-server',
      versionOf: 'openssh-server',
      description: "stand-in: Debian's sshd (privilege separation in /var/empty, as Alpine's)",
      files: [{ path: 'usr/sbin/sshd', mode: 0o755, data: sshd }],
      depends: [GLIBC, 'openssh-keygen', 'openssh-server-common'],
    },
    {
      name: 'openssh-client',
      versionOf: 'openssh-client',
      description: "stand-in: Debian's ssh and scp",
      files: await fromTree(root, ['usr/bin/ssh', 'usr/bin/scp']),
      depends: [GLIBC],
    },
    {
      name: 'openssh-sftp-server',
      versionOf: 'openssh-sftp-server',
      description: "stand-in: Debian's sftp-server",
      files: await fromTree(root, ['usr/lib/openssh/sftp-server'], {
        'usr/lib/openssh/sftp-server': 'usr/lib/ssh/sftp-server',
      }),
      depends: [GLIBC],
    },
    {
      name: 'openssh',
      versionOf: 'openssh-server',
      description: 'stand-in: the OpenSSH meta package',
      files: [],
      depends: ['openssh-client', 'openssh-sftp-server', 'openssh-server'],
    },
    {
      name: 'chrony',
      versionOf: 'chrony',
      description: "stand-in: Debian's chronyd and chronyc",
      files: [
        ...(await fromTree(root, ['usr/sbin/chronyd', 'usr/bin/chronyc'])),
        // Alpine's chrony.conf; Debian's chronyd runs as _chrony unless told otherwise
        text(
          'etc/chrony/chrony.conf',
          "# default config\npool pool.ntp.org iburst\ninitstepslew 10 pool.ntp.org\ndriftfile /var/lib/chrony/chrony.drift\nrtcsync\ncmdport 0\n# stand-in: Alpine's chronyd runs as chrony by default, Debian's as _chrony\nuser chrony\n",
        ),
      ],
      // chrony-openrc's install_if names chrony=4.5-r0, Alpine's version
      depends: [GLIBC, 'chrony-openrc'],
      scripts: {
        'pre-install':
          '#!/bin/sh\naddgroup -S chrony 2>/dev/null\nadduser -S -D -H -h /var/lib/chrony -s /sbin/nologin -G chrony -g chrony chrony 2>/dev/null\nexit 0\n',
      },
    },
    {
      name: 'dhcpcd',
      versionOf: 'dhcpcd-base',
      description: "stand-in: Debian's dhcpcd (as /sbin/dhcpcd, where Alpine's is)",
      files: await fromTree(root, ['usr/sbin/dhcpcd', 'usr/lib/dhcpcd', 'etc/dhcpcd.conf'], {
        'usr/sbin/dhcpcd': 'sbin/dhcpcd',
      }),
      depends: [GLIBC, 'dhcpcd-openrc'],
      scripts: {
        'pre-install':
          '#!/bin/sh\naddgroup -S dhcpcd 2>/dev/null\nadduser -S -D -H -h /var/lib/dhcpcd -s /sbin/nologin -G dhcpcd -g dhcpcd dhcpcd 2>/dev/null\nexit 0\n',
      },
    },
    {
      name: 'doas',
      versionOf: 'opendoas',
      description: "stand-in: Debian's opendoas (reads /etc/doas.conf only; PAM permits nopass rules only)",
      files: [
        ...(await fromTree(root, ['usr/bin/doas'])),
        ...(await fromTree(root, [
          'lib/aarch64-linux-gnu/security/pam_permit.so',
          'lib/aarch64-linux-gnu/security/pam_deny.so',
        ])),
        // Alpine's doas also reads /etc/doas.d/*.conf, where the image's setup puts this rule
        text(
          'etc/doas.conf',
          '# stand-in: the rule the image setup writes to /etc/doas.d/wheel.conf\npermit nopass :wheel\n',
        ),
        text(
          'etc/pam.d/doas',
          '# stand-in: no password authentication; a nopass rule needs only account and session\nauth required pam_deny.so\naccount required pam_permit.so\nsession required pam_permit.so\n',
        ),
      ],
      depends: [GLIBC],
    },
    {
      name: 'e2fsprogs',
      versionOf: 'e2fsprogs',
      description: "stand-in: Debian's e2fsprogs",
      files: await fromTree(root, [
        'sbin/mke2fs',
        'sbin/mkfs.ext4',
        'sbin/e2fsck',
        'sbin/fsck.ext4',
        'sbin/tune2fs',
        'sbin/e2label',
        'sbin/dumpe2fs',
        'etc/mke2fs.conf',
      ]),
      depends: [GLIBC],
    },
    {
      name: 'e2fsprogs-extra',
      versionOf: 'e2fsprogs',
      description: "stand-in: Debian's resize2fs and debugfs",
      files: await fromTree(root, ['sbin/resize2fs', 'sbin/debugfs']),
      depends: [GLIBC, 'e2fsprogs'],
    },
    {
      name: 'sfdisk',
      versionOf: 'fdisk',
      description: "stand-in: Debian's sfdisk",
      files: await fromTree(root, ['sbin/sfdisk']),
      depends: [GLIBC],
    },
    {
      name: 'partx',
      versionOf: 'util-linux',
      description: "stand-in: Debian's partx",
      files: await fromTree(root, ['usr/bin/partx']),
      depends: [GLIBC],
    },
    {
      name: 'tzdata',
      versionOf: 'tzdata',
      description: "stand-in: Debian's zoneinfo",
      files: (await fromTree(root, ['usr/share/zoneinfo'])).filter(
        (f) => !/^usr\/share\/zoneinfo\/(right|posix)\//.test(f.path),
      ),
    },
    {
      name: 'yx',
      description: "stand-in: an awk reader of block-style YAML maps (tiny-cloud's use of yx)",
      files: [text('usr/bin/yx', YX, 0o755)],
      depends: ['/bin/sh'],
    },
    {
      name: 'alpine-conf',
      description: 'stand-in: empty (nothing of alpine-conf runs in these images)',
      files: [],
    },
    { name: 'busybox-suid', description: 'stand-in: empty', files: [] },
  ];

  // ---- the glibc libraries every stand-in program needs (DT_NEEDED closure), from Debian's packages ----
  const pool = new Map<string, string>(); // soname -> path below libRoot
  const libRoot = join(work, 'libs');
  const seenDebs = new Set<string>();
  let queue = ['libc6', 'libgcc-s1'];
  // Depends + Pre-Depends of a .deb: the first of each alternative, library packages only
  const depsOf = async (deb: string) => {
    const out: string[] = [];
    for (const field of ['Depends', 'Pre-Depends']) {
      const v = (await run('dpkg-deb', ['-f', deb, field])).stdout.trim();
      for (const dep of v ? v.split(',') : []) {
        const first = dep
          .split('|')[0]!
          .trim()
          .split(/[\s(:]/)[0]!;
        if (/^(lib|zlib)/.test(first)) out.push(first);
      }
    }
    return out;
  };
  for (const n of names) queue.push(...(await depsOf(debs.get(n)!)));
  while (queue.length) {
    const next = [...new Set(queue)].filter((n) => !seenDebs.has(n));
    queue = [];
    if (!next.length) break;
    const got = await t.debs(next);
    for (const n of next) {
      seenDebs.add(n);
      libDebs.set(n, got.get(n)!);
      await t.extractDeb(got.get(n)!, libRoot);
      queue.push(...(await depsOf(got.get(n)!)));
    }
  }
  for (const d of LIB_DIRS) {
    if (!existsSync(join(libRoot, d))) continue;
    for (const f of await readdir(join(libRoot, d))) if (/\.so(\.|$)/.test(f)) pool.set(f, join(d, f));
  }
  const libs = new Map<string, ApkFile>();
  const want: string[] = [];
  const need = (b: Buffer | undefined) => {
    if (b) want.push(...elfNeeded(b));
  };
  for (const s of specs) for (const f of s.files) need(f.data);
  // the loader itself and what glibc loads by name (NSS for user names in sshd, doas, chronyd)
  want.push('ld-linux-aarch64.so.1', 'libnss_files.so.2');
  while (want.length) {
    const so = want.pop()!;
    if (libs.has(so)) continue;
    const rel = pool.get(so);
    if (!rel) throw new Error(`stand-in glibc: no Debian package in the closure provides ${so}`);
    // the soname is usually a symlink to the versioned file: ship both
    const st = await lstat(join(libRoot, rel));
    if (st.isSymbolicLink()) {
      const target = await readlink(join(libRoot, rel));
      libs.set(so, { path: rel, mode: 0o777, symlink: target });
      const real = posix.join(posix.dirname(rel), target);
      const data = await readFile(join(libRoot, real));
      libs.set(`${so}@file`, { path: real, mode: 0o755, data });
      need(data);
    } else {
      const data = await readFile(join(libRoot, rel));
      libs.set(so, { path: rel, mode: 0o755, data });
      need(data);
    }
  }
  const ld = 'lib/aarch64-linux-gnu/ld-linux-aarch64.so.1';
  const glibcFiles = [...libs.values()];
  // the ELF interpreter path of every program
  glibcFiles.push({ path: 'lib/ld-linux-aarch64.so.1', mode: 0o777, symlink: `/${ld}` });
  specs.push({
    name: GLIBC,
    versionOf: 'libc6',
    description: `stand-in: Debian's glibc loader and ${libs.size} libraries the stand-in programs need`,
    files: glibcFiles,
  });

  const out: BuiltApk[] = [];
  for (const s of specs) {
    out.push(
      buildApk(
        {
          name: s.name,
          version: s.versionOf ? await version(s.versionOf) : '1.0-r0',
          arch: 'aarch64',
          description: s.description,
          depends: s.depends,
          provides: s.provides,
          providerPriority: s.providerPriority,
          files: s.files,
          scripts: s.scripts,
          builddate: t.builddate,
        },
        t.key,
      ),
    );
  }

  // ---- Alpine's noarch packages, unmodified ----
  const index = await mirrorIndex(t.mirror);
  for (const name of REAL_NOARCH) {
    const entry = index.get(name);
    if (!entry) throw new Error(`the mirror's APKINDEX has no ${name}`);
    const v = /^V:(.+)$/m.exec(entry)![1]!;
    const fileName = `${name}-${v}.apk`;
    const buf = await readFile(join(t.mirror, 'v3.19', 'main', 'x86_64', fileName));
    // A: is the repository's arch, as in Alpine's own indexes (apk fetches <repo>/<A>/<file>)
    out.push({ fileName, buf, indexEntry: entry.replace(/^A:.*$/m, 'A:aarch64') });
  }
  return out;
}
