// The chroot builder: one variant's image.qcow2 without a VM.
//
//   minirootfs  the release's minirootfs from --cdn-url, verified like the builder ISO (checksum + OpenPGP
//               signature against keys/), cached in work/minirootfs (kept by --clean)
//   extract     unpacked into work/chroot/<config_key>/builder: the builder environment (its apk, busybox)
//   provision   the variant's setup scripts run in it (chroot) against TARGET=/mnt, exactly the scripts the VM
//               builder runs in its VM, with BUILDER=chroot; the repositories as the build reaches them
//               (--cdn-url for the CDN, file:// mirrors mounted read-only) and a package cache shared by all
//               variants of the arch (work/apk-cache/<arch>)
//   disk        the disk made from /mnt without mounting it (libexec/chroot-build disk), reproducibly
//   qcow2       qemu-img convert -> image.qcow2, which the usual conversion, compression and checksum take
//
// The namespaced parts run under `unshare --mount` (root) or `unshare --user --map-root-user --mount --pid`
// (unprivileged user namespaces), so no mount outlives the build.
import { createPublicKey } from 'node:crypto';
import { realpathSync, statSync } from 'node:fs';
import { chmod, copyFile, cp, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { createInterface } from 'node:readline';
import { execa } from 'execa';
import { flat } from '../../config/flat.js';
import type { Image } from '../../state/image.js';
import { UserError } from '../../util/errors.js';
import { fetchBytes } from '../download.js';
import { bootloaderOf, scriptEnvironment } from '../variant.js';
import { buildRepos, diskEnv, diskPlan, envFile, substituteCdn } from './plan.js';

export { type BuilderDecision, chrootDecision, type HostFacts, probeHost } from './host.js';

import { USERNS_MAP } from './host.js';

export { minirootfsUrl } from './plan.js';

export interface NoteLog {
  note(text: string): void;
  raw(line: string): void;
}

export interface ChrootBuild {
  image: Image;
  workDir: string;
  /** repository root (libexec/chroot-build) */
  rootDir: string;
  cdnUrl: string;
  debug: boolean;
  mode: 'root' | 'userns';
  /** the verified minirootfs */
  minirootfs: string;
  vlog: NoteLog;
  /** progress: provisioning (script), disk, ... */
  set(state: 'chroot' | 'provisioning' | 'disk', detail?: string): void;
}

export interface ChrootResult {
  sourceDateEpoch: number;
  /** phases in ms */
  timings: Record<string, number>;
}

const CACHE_INSIDE = '/var/cache/cib-apk';
const KEYS_INSIDE = '/tmp/repo-keys';

function realDir(dir: string): string | undefined {
  try {
    const p = realpathSync(dir);
    return statSync(p).isDirectory() ? p : undefined;
  } catch {
    return undefined;
  }
}

/** Run one command of libexec/chroot-build in its own namespaces, its output into the build log. */
async function inNamespace(
  b: ChrootBuild,
  command: 'extract' | 'provision' | 'disk' | 'clean',
  env: Record<string, string>,
): Promise<void> {
  const script = join(b.rootDir, 'libexec', 'chroot-build');
  const ns =
    b.mode === 'root'
      ? ['--mount', '--propagation', 'private']
      : [...USERNS_MAP, '--mount', '--propagation', 'private', '--pid', '--fork'];
  const args = [...ns, '--', 'sh', script, command];
  b.vlog.note(`$ unshare ${args.join(' ')}`);
  const child = execa('unshare', args, {
    env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8', ...env },
    extendEnv: false,
    reject: false,
    all: true,
    buffer: false,
    stdin: 'ignore',
  });
  const recent: string[] = [];
  const notable: string[] = [];
  if (child.all) {
    const rl = createInterface({ input: child.all, crlfDelay: Number.POSITIVE_INFINITY });
    for await (const line of rl) {
      b.vlog.raw(line);
      const run = /^==> running (\S+) in the builder chroot/.exec(line);
      if (run) b.set('provisioning', run[1]);
      // eslint-disable-next-line no-control-regex
      const text = line.replace(/\x1b\[[0-9;]*m/g, '').trim();
      if (text) {
        recent.push(text);
        if (recent.length > 3) recent.shift();
        // apk's and the scripts' own complaints say why, wherever they are in the output
        if (/^(ERROR|WARNING|FATAL)\b|UNTRUSTED|no such package|BAD signature/i.test(text)) {
          notable.push(text);
          if (notable.length > 4) notable.shift();
        }
      }
    }
  }
  const r = await child;
  if (r.exitCode !== 0) {
    throw new UserError(
      `chroot builder: ${command} failed (exit ${r.exitCode ?? r.signal}): ${[...notable, ...recent.filter((l) => !notable.includes(l))].join(' | ').slice(0, 900)}`,
    );
  }
}

/** Build image.qcow2 of one variant with the chroot builder. */
export async function buildChroot(b: ChrootBuild): Promise<ChrootResult> {
  const c = b.image.config;
  const key = c.config_key;
  const timings: Record<string, number> = {};
  const phase = async <T>(name: string, fn: () => Promise<T>): Promise<T> => {
    const t0 = Date.now();
    try {
      return await fn();
    } finally {
      timings[name] = Date.now() - t0;
    }
  };
  const bootloader = bootloaderOf(b.image);
  const plan = diskPlan({
    imageKey: c.image_key,
    configKey: key,
    arch: c.arch,
    bootloader,
    diskMiB: c.disk_size,
  });
  // (scripts and script_dirs are plain names of work/scripts, checked at configs)
  const scripts = c.scripts;
  const dirs = c.script_dirs;
  if (scripts.length === 0) throw new UserError(`${key}: no setup scripts (scripts is empty)`);
  const scriptsDir = join(b.workDir, 'scripts');

  const dir = join(b.workDir, 'chroot', key);
  const builder = join(dir, 'builder');
  const raw = join(dir, 'disk.raw');
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });

  b.set('chroot', basename(b.minirootfs));
  await phase('extract', () => inNamespace(b, 'extract', { BUILDER_DIR: builder, MINIROOTFS: b.minirootfs }));

  // the scripts and their data, as Packer's file and shell provisioners put them in the VM
  for (const s of scripts) {
    const dest = join(builder, 'tmp', 'scripts', s);
    try {
      await copyFile(join(scriptsDir, s), dest);
    } catch {
      throw new UserError(
        `${key}: ${join(scriptsDir, s)} is missing (scripts are looked up in work/scripts)`,
      );
    }
    await chmod(dest, 0o755);
  }
  for (const d of dirs) {
    try {
      await cp(join(scriptsDir, d), join(builder, 'tmp', d), { recursive: true });
    } catch {
      throw new UserError(
        `${key}: ${join(scriptsDir, d)} is missing (script_dirs are looked up in work/scripts)`,
      );
    }
  }

  // repo_keys: fetched here (file://, https://), checked to be RSA public keys, copied in by setup
  const keysDir = join(builder, KEYS_INSIDE.slice(1));
  await mkdir(keysDir, { recursive: true });
  for (const configured of c.repo_keys) {
    // keys kept on the CDN come from --cdn-url like the repositories
    const url = substituteCdn(configured, b.cdnUrl);
    const name = basename(new URL(url, 'file:///').pathname);
    const pem = await fetchBytes(url.includes('://') ? url : `file://${url}`);
    try {
      createPublicKey(pem);
    } catch (err) {
      throw new UserError(`${key}: repo_keys ${url} is not an RSA public key (${(err as Error).message})`);
    }
    await writeFile(join(keysDir, name), pem);
    b.vlog.note(`repository key ${name} from ${url}`);
  }

  const repos = buildRepos(c.repos, b.cdnUrl, realDir);
  for (const s of repos.skipped) b.vlog.note(`repository ${s} does not exist here: left out of the build`);
  const cache = join(b.workDir, 'apk-cache', c.arch);
  await mkdir(cache, { recursive: true });
  const binds = [...repos.binds, { host: cache, inside: CACHE_INSIDE, rw: true }];
  b.vlog.note(`build repositories:\n${repos.lines}`);

  const env = [
    ...scriptEnvironment(b.image, b.debug),
    'BUILDER=chroot',
    'TARGET=/mnt',
    `BUILD_REPOS=${repos.lines}`,
    `REPO_KEYS_DIR=${KEYS_INSIDE}`,
    `APK_CACHE=${CACHE_INSIDE}`,
    ...(process.env.SOURCE_DATE_EPOCH ? [`SOURCE_DATE_EPOCH=${process.env.SOURCE_DATE_EPOCH}`] : []),
  ];
  await writeFile(join(builder, 'tmp', 'cib-env'), envFile(env), { mode: 0o600 });

  await phase('provision', () =>
    inNamespace(b, 'provision', {
      BUILDER_DIR: builder,
      SCRIPTS: scripts.join(' '),
      BINDS: binds.map((x) => `${x.host} ${x.inside}${'rw' in x && x.rw ? ' rw' : ''}`).join('\n'),
    }),
  );

  let sde = Number(process.env.SOURCE_DATE_EPOCH);
  if (!Number.isInteger(sde) || sde <= 0) {
    sde = Number((await readFile(join(builder, 'tmp', 'source-date-epoch'), 'utf8').catch(() => '')).trim());
  }
  if (!Number.isInteger(sde) || sde <= 0) {
    throw new UserError(`${key}: setup left no SOURCE_DATE_EPOCH (/tmp/source-date-epoch in the builder)`);
  }
  b.vlog.note(`SOURCE_DATE_EPOCH=${sde}`);

  b.set('disk', `${plan.layout}, ${flat.diskSize(c.disk_size)}`);
  await phase('disk', () =>
    inNamespace(b, 'disk', {
      TREE: join(builder, 'mnt'),
      RAW: raw,
      SOURCE_DATE_EPOCH: String(sde),
      ...diskEnv(plan),
    }),
  );

  await phase('qcow2', async () => {
    const tmp = `${b.image.localImage}.tmp`;
    const r = await execa('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', raw, tmp], {
      reject: false,
      all: true,
    });
    if (r.exitCode !== 0) throw new UserError(`qemu-img convert failed: ${String(r.all ?? '').trim()}`);
    await rename(tmp, b.image.localImage);
  });
  if (!b.debug) {
    // unprivileged: files of other users (subordinate ids) can only be removed inside the namespace
    if (b.mode === 'userns') await inNamespace(b, 'clean', { DIR: dir });
    await rm(dir, { recursive: true, force: true });
  } else b.vlog.note(`--debug: the builder and disk.raw stay in ${dir}`);
  return { sourceDateEpoch: sde, timings };
}
