// A real Alpine root for the supply-chain tests: the mirror's x86_64 minirootfs (checked against its .sha512)
// installs packages from the mirror's signed repository into a new root with its own apk, run through its musl
// loader, trusting only the mirror's keys (never --allow-untrusted). Cached by input under the temp directory.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from './cli.js';

export function alpineMirror(): string | undefined {
  const dir = process.env.ALPINE_MIRROR || join(ROOT, '..', 'shared', 'alpine-mirror');
  return existsSync(join(dir, 'v3.19', 'main', 'x86_64', 'APKINDEX.tar.gz')) ? dir : undefined;
}

export const SKIP_NO_MIRROR = 'no Alpine mirror (set ALPINE_MIRROR or provide ../shared/alpine-mirror)';

const MINIROOTFS = 'v3.19/releases/x86_64/alpine-minirootfs-3.19.4-x86_64.tar.gz';

/** The extracted minirootfs (its apk installs the roots below). */
export function minirootfs(mirror: string): string {
  const tarball = join(mirror, MINIROOTFS);
  const data = readFileSync(tarball);
  const want = readFileSync(`${tarball}.sha512`, 'utf8').trim().split(/\s+/)[0];
  const have = createHash('sha512').update(data).digest('hex');
  if (have !== want) throw new Error(`${tarball}: sha512 ${have} does not match its .sha512 ${want}`);
  const dir = join(tmpdir(), `cib-supply-minirootfs-${have.slice(0, 16)}`);
  if (existsSync(join(dir, '.done'))) return dir;
  const tmp = `${dir}.${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  execFileSync('tar', ['-xzf', tarball, '-C', tmp]);
  execFileSync('touch', [join(tmp, '.done')]);
  try {
    renameSync(tmp, dir);
  } catch {
    rmSync(tmp, { recursive: true, force: true }); // another worker won
  }
  return dir;
}

/** Install `packages` into a fresh root with the minirootfs's apk; cached per package list. */
export function installedRoot(mirror: string, packages: readonly string[]): string {
  const mini = minirootfs(mirror);
  const key = createHash('sha256')
    .update(
      `${mini}\n${readFileSync(join(mirror, 'v3.19/main/x86_64/APKINDEX.tar.gz')).length}\n${packages.join(' ')}`,
    )
    .digest('hex')
    .slice(0, 16);
  const dir = join(tmpdir(), `cib-supply-root-${key}`);
  if (existsSync(join(dir, 'lib/apk/db/installed'))) return dir;
  const tmp = `${dir}.${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  execFileSync(
    join(mini, 'lib/ld-musl-x86_64.so.1'),
    [
      '--library-path',
      `${join(mini, 'lib')}:${join(mini, 'usr/lib')}`,
      join(mini, 'sbin/apk'),
      '--root',
      tmp,
      '--initdb',
      '--no-network',
      '--no-cache',
      '--repository',
      join(mirror, 'v3.19/main'),
      '--keys-dir',
      join(mirror, 'keys'),
      'add',
      ...packages,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  try {
    renameSync(tmp, dir);
  } catch {
    rmSync(tmp, { recursive: true, force: true });
  }
  return dir;
}

/** A partitioned (MBR) raw disk with the tree as its ext4 root at 1 MiB, as the chroot builder lays it out. */
export function ext4Disk(tree: string, out: string): void {
  rmSync(out, { force: true });
  execFileSync('truncate', ['-s', '192M', out]);
  execFileSync('sfdisk', ['-q', out], { input: 'start=2048, type=83\n' });
  execFileSync(
    'mke2fs',
    ['-q', '-t', 'ext4', '-b', '4096', '-d', tree, '-E', 'offset=1048576', '-F', out, '48000'],
    {
      env: { ...process.env, E2FSPROGS_FAKE_TIME: '1700000000' },
    },
  );
}
