// Can this host run the chroot builder for a variant? The facts are gathered once (probeHost) and the
// decision is a pure function of them (chrootDecision), so every branch is unit-tested.
import { readFile } from 'node:fs/promises';
import { arch as nodeArch } from 'node:os';
import { execa } from 'execa';
import { onPath } from '../../util/on-path.js';

export interface BinfmtHandler {
  /** the handler file exists in /proc/sys/fs/binfmt_misc */
  registered: boolean;
  enabled: boolean;
  interpreter?: string;
  flags?: string;
}

export interface HostFacts {
  uid: number;
  /** Alpine's name of the host architecture */
  hostArch: string;
  /** `unshare --user --map-root-user` works (checked only when not root) */
  userns: { ok: boolean; detail?: string };
  /** `unshare --map-root-user --map-auto` works: the user's subordinate ids (newuidmap, /etc/subuid and
   *  /etc/subgid) map uids and gids 1-65535 too, so files can belong to other users (checked only when not root
   *  and userns works; undefined: not checked) */
  subids?: { ok: boolean; detail?: string };
  binfmtMounted: boolean;
  /** per foreign arch (Alpine name) */
  binfmt: Record<string, BinfmtHandler>;
  /** host commands that are missing */
  missing: string[];
}

export type BuilderKind = 'chroot' | 'vm';

export interface BuilderDecision {
  builder: BuilderKind;
  /** why, for the one log line */
  reason: string;
  /** how the chroot builder enters its namespaces */
  mode?: 'root' | 'userns';
  /** set when the variant asked for chroot and the host cannot: the error */
  error?: string;
}

/**
 * The user namespace of an unprivileged build: the user is root in it, and its subordinate ids (newuidmap with
 * /etc/subuid and /etc/subgid) are uids and gids 1-65535, so packages can own files by other users (the
 * minirootfs's /etc/shadow is group shadow, chrony's state directory user chrony, ...).
 */
export const USERNS_MAP = ['--user', '--map-root-user', '--map-auto'] as const;

const ALPINE_ARCH: Record<string, string> = { x64: 'x86_64', arm64: 'aarch64' };
/** qemu-user's name of each Alpine arch (the binfmt_misc handler is qemu-<name>) */
const QEMU_ARCH: Record<string, string> = { x86_64: 'x86_64', aarch64: 'aarch64' };

/** Host commands the chroot builder runs, per layout. */
export const CHROOT_TOOLS = {
  common: ['unshare', 'chroot', 'tar', 'mke2fs', 'debugfs', 'sfdisk', 'qemu-img'],
  bios: ['tune2fs', 'mount'],
  uefi: ['mkfs.vfat', 'mmd', 'mcopy', 'grub-mkimage'],
} as const;

/** Read /proc/sys/fs/binfmt_misc/<name>: "enabled", "interpreter ...", "flags: PF". */
export function parseBinfmt(text: string | undefined): BinfmtHandler {
  if (text === undefined) return { registered: false, enabled: false };
  const lines = text.split('\n');
  return {
    registered: true,
    enabled: lines[0]?.trim() === 'enabled',
    interpreter: /^interpreter (.*)$/m.exec(text)?.[1]?.trim(),
    flags: /^flags: ?(.*)$/m.exec(text)?.[1]?.trim() ?? '',
  };
}

async function readOpt(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch {
    return undefined;
  }
}

/** Whether `unshare <args>` works here; if not, the last line it printed (or `failed`). */
async function unshareProbe(
  args: readonly string[],
  failed: string,
): Promise<{ ok: boolean; detail?: string }> {
  const r = await execa('unshare', args, { reject: false, all: true, stdin: 'ignore' });
  if (r.exitCode === 0) return { ok: true };
  return {
    ok: false,
    detail:
      String(r.all ?? r.message ?? '')
        .trim()
        .split('\n')
        .pop() || failed,
  };
}

/** Gather the facts (about 10 ms as root; a user-namespace probe otherwise). */
export async function probeHost(arches: readonly string[]): Promise<HostFacts> {
  const uid = process.getuid?.() ?? 0;
  const hostArch = ALPINE_ARCH[nodeArch()] ?? nodeArch();
  const userns: HostFacts['userns'] =
    uid === 0
      ? { ok: true }
      : await unshareProbe(['--user', '--map-root-user', '--mount', 'true'], 'unshare failed');
  const subids: HostFacts['subids'] =
    uid !== 0 && userns.ok
      ? await unshareProbe([...USERNS_MAP, '--mount', 'true'], 'unshare --map-auto failed')
      : undefined;
  const binfmtMounted = (await readOpt('/proc/sys/fs/binfmt_misc/status')) !== undefined;
  const binfmt: Record<string, BinfmtHandler> = {};
  for (const a of arches) {
    if (a === hostArch) continue;
    binfmt[a] = parseBinfmt(await readOpt(`/proc/sys/fs/binfmt_misc/qemu-${QEMU_ARCH[a] ?? a}`));
  }
  const missing: string[] = [];
  const all = new Set<string>([...CHROOT_TOOLS.common, ...CHROOT_TOOLS.bios, ...CHROOT_TOOLS.uefi]);
  for (const t of all) if (!(await onPath(t))) missing.push(t);
  return { uid, hostArch, userns, ...(subids ? { subids } : {}), binfmtMounted, binfmt, missing };
}

/**
 * Which builder a variant gets. `setting` is the variant's `builder` (chroot, vm, or unset = chroot where the
 * host can run it). The reasons name exactly what is missing and how to get it.
 */
export function chrootDecision(
  o: { arch: string; bootloader: string; setting?: string | null },
  f: HostFacts,
): BuilderDecision {
  if (o.setting === 'vm') return { builder: 'vm', reason: 'builder: vm is set' };
  const why = cannotChroot(o, f);
  if (why === undefined) {
    const mode = f.uid === 0 ? 'root' : 'userns';
    const how = mode === 'root' ? 'running as root' : 'unprivileged user namespaces';
    const foreign =
      o.arch !== f.hostArch
        ? `, ${o.arch} programs through qemu-user (binfmt qemu-${QEMU_ARCH[o.arch] ?? o.arch})`
        : '';
    const base = o.setting === 'chroot' ? 'builder: chroot is set' : 'the host can run it';
    return { builder: 'chroot', mode, reason: `${base}: ${how}${foreign}` };
  }
  if (o.setting === 'chroot') {
    return { builder: 'vm', reason: why, error: `builder: chroot is set, but ${why}` };
  }
  return { builder: 'vm', reason: why };
}

function cannotChroot(o: { arch: string; bootloader: string }, f: HostFacts): string | undefined {
  if (f.uid !== 0 && !f.userns.ok) {
    return `not root and unprivileged user namespaces are unavailable (${f.userns.detail ?? 'unshare --user failed'})`;
  }
  if (f.uid !== 0 && f.subids && !f.subids.ok) {
    return `not root, and the user namespace can map only root (${f.subids.detail ?? 'unshare --map-auto failed'}): files owned by other users (e.g. /etc/shadow, group shadow) need subordinate ids (newuidmap from Debian's uidmap, and a range for the user in /etc/subuid and /etc/subgid)`;
  }
  if (f.uid !== 0 && o.bootloader === 'extlinux') {
    return 'extlinux (BIOS) installs into a loop-mounted file system, which needs root';
  }
  const layout = o.bootloader === 'extlinux' ? 'bios' : 'uefi';
  const missing = f.missing.filter(
    (t) =>
      (CHROOT_TOOLS.common as readonly string[]).includes(t) ||
      (CHROOT_TOOLS[layout] as readonly string[]).includes(t),
  );
  if (missing.length) {
    return `missing host commands: ${missing.join(', ')} (Debian: e2fsprogs fdisk qemu-utils${layout === 'uefi' ? ' dosfstools mtools grub-common' : ''})`;
  }
  if (o.arch !== f.hostArch) {
    const q = `qemu-${QEMU_ARCH[o.arch] ?? o.arch}`;
    if (!f.binfmtMounted) {
      return `${o.arch} on a ${f.hostArch} host needs a qemu-user binfmt handler, and /proc/sys/fs/binfmt_misc is not mounted (mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc; update-binfmts --enable ${q})`;
    }
    const h = f.binfmt[o.arch];
    if (!h?.registered) {
      return `${o.arch} on a ${f.hostArch} host needs a qemu-user binfmt handler: /proc/sys/fs/binfmt_misc/${q} is not registered (Debian: apt-get install qemu-user-static binfmt-support; update-binfmts --enable ${q})`;
    }
    if (!h.enabled) {
      return `${o.arch} on a ${f.hostArch} host needs a qemu-user binfmt handler: /proc/sys/fs/binfmt_misc/${q} is disabled (update-binfmts --enable ${q})`;
    }
    if (!(h.flags ?? '').includes('F')) {
      return `${o.arch} on a ${f.hostArch} host: the binfmt handler ${q} (${h.interpreter ?? '?'}) lacks the F (fix-binary) flag, so it cannot run inside a chroot (use qemu-user-static's handler)`;
    }
  }
  return undefined;
}
