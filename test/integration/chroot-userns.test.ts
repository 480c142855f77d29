// The chroot builder without root (#10 item 1): `./build local` run by an ordinary user, in an unprivileged user
// namespace, builds the x86_64 UEFI tiny image from the Alpine mirror, and its file tree is the root build's
// (ensureTinyImage, shared with chroot-e2e), owners included: the user namespace maps the user's subordinate
// ids (newuidmap, /etc/subuid, /etc/subgid) as uids and gids 1-65535, so packages can own files by other users.
//
// The test makes a throwaway system user with a subordinate id range (needs root, useradd/usermod, and Debian's
// uidmap for newuidmap) and runs the CLI as that user with setpriv. The BIOS layout needs root (extlinux installs
// into a loop-mounted file system), so as that user BIOS goes to the VM builder with that reason; a user without
// subordinate ids gets the VM builder with the reason too.
import { execFile } from 'node:child_process';
import { chmod, chown, mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readDisk } from '../../src/supply/disk.js';
import { describeDiff, diffManifests } from '../../src/supply/manifest.js';
import { onPath as has } from '../../src/util/on-path.js';
import {
  type ChrootEnv,
  chrootUnavailable,
  ensureTinyImage,
  localArgs,
  prepareChrootEnv,
} from '../helpers/alpine-image.js';
import { REPO_ROOT, repoUnreachableByOthers } from '../helpers/alpine-standin.js';
import { runBuild } from '../helpers/cli.js';

const run = promisify(execFile);

const USER = 'cibuserns';
/** the subordinate ids the test gives its user (uids/gids 1-65535 in the namespace) */
const SUBIDS = '1000000-1065535';

async function unavailable(): Promise<string | undefined> {
  const r = await chrootUnavailable('x86_64', 'uefi');
  if (r) return r;
  const far = repoUnreachableByOthers();
  if (far) return far;
  for (const t of ['newuidmap', 'newgidmap'])
    if (!(await has(t))) return `missing ${t} (Debian: uidmap; see .ci/apt-packages.txt)`;
  for (const t of ['useradd', 'usermod', 'setpriv'])
    if (!(await has(t))) return `missing ${t} (makes and becomes the test's throwaway user)`;
  const max = Number((await readFile('/proc/sys/user/max_user_namespaces', 'utf8').catch(() => '0')).trim());
  if (!(max > 0)) return 'user namespaces are disabled here (user.max_user_namespaces is 0)';
  return undefined;
}

const reason = await unavailable();
if (reason) console.warn(`skipping the unprivileged chroot builder test: ${reason}`);

/** The throwaway user with a subordinate id range: made once per machine. */
async function ensureUser(): Promise<{ uid: number; gid: number }> {
  const id = async () => {
    const u = Number((await run('id', ['-u', USER])).stdout.trim());
    const g = Number((await run('id', ['-g', USER])).stdout.trim());
    return { uid: u, gid: g };
  };
  try {
    await id();
  } catch {
    await run('useradd', ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', USER]);
  }
  const has = async (f: string) =>
    (await readFile(f, 'utf8').catch(() => '')).split('\n').some((l) => l.startsWith(`${USER}:`));
  if (!(await has('/etc/subuid')) || !(await has('/etc/subgid')))
    await run('usermod', ['--add-subuids', SUBIDS, '--add-subgids', SUBIDS, USER]);
  return id();
}

let base: string;
let env: ChrootEnv;
let user: { uid: number; gid: number };

/** ./build as the user `ids` with a work directory of its own. */
async function buildAs(
  ids: { uid: number; gid: number },
  name: string,
  only: string[],
): Promise<{ code: number; stderr: string; work: string }> {
  const work = join(base, name);
  await mkdir(work, { recursive: true });
  await chown(work, ids.uid, ids.gid);
  return new Promise((resolve) => {
    execFile(
      'setpriv',
      [
        `--reuid=${ids.uid}`,
        `--regid=${ids.gid}`,
        '--clear-groups',
        join(REPO_ROOT, 'build'),
        ...localArgs(env, work, only),
      ],
      {
        cwd: REPO_ROOT,
        env: { PATH: process.env.PATH, HOME: work, NO_COLOR: '1' },
        timeout: 10 * 60_000,
        maxBuffer: 16 << 20,
      },
      (err, _out, stderr) => resolve({ code: err ? Number(err.code ?? 1) : 0, stderr: String(stderr), work }),
    );
  });
}

describe.skipIf(reason)(
  'chroot builder without root (unprivileged user namespace)',
  { timeout: 15 * 60_000 },
  () => {
    beforeAll(async () => {
      base = await mkdtemp(join(tmpdir(), 'chroot-userns-'));
      await chmod(base, 0o755);
      user = await ensureUser();
      env = await prepareChrootEnv(join(base, 'env'));
      await runBuild(['--help']); // compiled before an unprivileged user runs it
    }, 10 * 60_000);
    afterAll(async () => {
      if (base) await rm(base, { recursive: true, force: true });
    });

    it("builds the x86_64 UEFI tiny image as an ordinary user, and its tree is the root build's, owners included", async () => {
      const only = ['3.19', 'x86_64', 'uefi', 'tiny', 'vm', 'nocloud'];
      const r = await buildAs(user, 'work-uefi', only);
      if (r.code !== 0) console.error(r.stderr.slice(-6000));
      expect(r.stderr).toMatch(
        /builder for x86_64 UEFI \(grub-efi\): chroot \(the host can run it: unprivileged user namespaces\)/,
      );
      expect(r.code).toBe(0);
      // the builder directory (files of subordinate ids) was removed inside the namespace
      expect(await readdir(join(r.work, 'chroot'))).toEqual([]);
      const image = join(
        r.work,
        'images',
        'nocloud',
        '3.19.4-x86_64-uefi-tiny-vm-nocloud',
        'nocloud_alpine-3.19.4-x86_64-uefi-tiny-r0.qcow2',
      );
      const asRoot = await ensureTinyImage('uefi');
      const [mine, theirs] = [await readDisk(image), await readDisk(asRoot.image)];
      expect(describeDiff(diffManifests(theirs.manifest, mine.manifest), 20)).toBe('no differences');
      // files owned by other users than root made it into the image
      const shadow = mine.manifest.entries.find((e) => e.path === '/etc/shadow');
      expect(shadow?.gid).toBe(42);
      expect(mine.manifest.entries.filter((e) => e.uid !== 0 || e.gid !== 0).length).toBeGreaterThan(1);
    });

    it('BIOS without root goes to the VM builder, saying why', async () => {
      const r = await buildAs(user, 'work-bios', ['3.19', 'x86_64', 'bios', 'tiny', 'vm', 'nocloud']);
      expect(r.stderr).toMatch(
        /builder for x86_64 BIOS \(extlinux\): vm \(extlinux \(BIOS\) installs into a loop-mounted file system, which needs root\)/,
      );
    });

    it('a user without subordinate ids gets the VM builder, saying what is missing', async () => {
      const r = await buildAs({ uid: 65534, gid: 65534 }, 'work-nobody', [
        '3.19',
        'x86_64',
        'uefi',
        'tiny',
        'vm',
        'nocloud',
      ]);
      expect(r.stderr).toMatch(
        /builder for x86_64 UEFI \(grub-efi\): vm \(not root, and the user namespace can map only root \(.*\): files owned by other users .* need subordinate ids \(newuidmap from Debian's uidmap, and a range for the user in \/etc\/subuid and \/etc\/subgid\)\)/,
      );
    });
  },
);
