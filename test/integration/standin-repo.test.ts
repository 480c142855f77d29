// The tests' signed stand-in repository (test/helpers/alpine-standin.ts): its index and packages verify with
// the project's own apk reader against the stand-in key only, and the real apk of the mirror's minirootfs
// installs them next to the real packages without --allow-untrusted (and refuses them without the key).
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { indexEntry, loadApkKeys, verifyApk, verifyApkIndex } from '../../src/local/apk.js';
import {
  alpineMirror,
  ensureStandinRepo,
  MIRROR_RELEASE,
  type StandinRepo,
} from '../helpers/alpine-standin.js';

const run = promisify(execFile);
const mirror = alpineMirror();
const noApt =
  existsSync('/usr/bin/apt-get') && existsSync('/usr/bin/dpkg-deb')
    ? undefined
    : 'needs apt-get and dpkg-deb';
const skip = mirror.reason ?? noApt;
if (skip) console.warn(`skipping the stand-in repository test: ${skip}`);

describe.skipIf(skip)('stand-in apk repository', () => {
  let repo: StandinRepo;
  let base: string;
  beforeAll(async () => {
    repo = await ensureStandinRepo('x86_64');
    base = await mkdtemp(join(tmpdir(), 'standin-'));
  }, 300_000);
  afterAll(async () => {
    if (base) await rm(base, { recursive: true, force: true });
  });

  it('holds the kernel, mkinitfs and bootloader stand-ins, signed by the stand-in key', async () => {
    expect(repo.packages.map((p) => p.replace(/-\d.*$/, ''))).toEqual([
      'grub-efi',
      'linux-virt',
      'mkinitfs',
      'syslinux',
    ]);
    const keyDir = join(base, 'keys');
    await mkdir(keyDir);
    await cp(repo.publicKeyPath, join(keyDir, repo.keyName));
    const keys = await loadApkKeys([keyDir]);
    const index = verifyApkIndex(
      await readFile(join(repo.dir, 'x86_64', 'APKINDEX.tar.gz')),
      keys,
      'stand-in',
    );
    for (const file of repo.packages) {
      const name = file.replace(/-\d.*$/, '');
      const entry = indexEntry(index, name);
      expect(entry, name).toBeDefined();
      const files = verifyApk(await readFile(join(repo.dir, 'x86_64', file)), entry!, file);
      expect(files.length).toBeGreaterThan(0);
    }
    // Alpine's keys alone do not trust it
    const alpine = await loadApkKeys([join(import.meta.dirname, '..', '..', 'keys', 'apk')]);
    expect(() =>
      verifyApkIndex(readFileSync(join(repo.dir, 'x86_64', 'APKINDEX.tar.gz')), alpine, 'stand-in'),
    ).toThrow(/not a trusted repository key/);
  });

  it.skipIf(process.getuid?.() !== 0)(
    "the minirootfs's apk installs real and stand-in packages together, with signatures checked",
    async () => {
      const root = join(base, 'builder');
      await mkdir(root);
      await run('tar', [
        '-xzf',
        join(mirror.dir!, 'v3.19', 'releases', 'x86_64', `alpine-minirootfs-${MIRROR_RELEASE}-x86_64.tar.gz`),
        '-C',
        root,
      ]);
      const apk = (keysDir: string) => [
        join(root, 'lib', 'ld-musl-x86_64.so.1'),
        '--library-path',
        `${join(root, 'lib')}:${join(root, 'usr', 'lib')}`,
        join(root, 'sbin', 'apk'),
        '--root',
        join(base, 'target'),
        '--initdb',
        '--no-cache',
        '--no-scripts',
        '--no-network',
        '--repository',
        join(mirror.dir!, 'v3.19', 'main'),
        '--repository',
        repo.dir,
        '--keys-dir',
        keysDir,
        'add',
        'linux-virt',
        'mkinitfs',
        'syslinux',
        'busybox',
      ];
      // without the stand-in key: refused (apk names the untrusted signature)
      const alpineKeys = join(import.meta.dirname, '..', '..', 'keys', 'apk');
      const refused = await run(apk(alpineKeys)[0]!, apk(alpineKeys).slice(1)).catch(
        (e: { stderr: string }) => e,
      );
      expect(String((refused as { stderr: string }).stderr)).toMatch(/UNTRUSTED signature|untrusted/i);
      await rm(join(base, 'target'), { recursive: true, force: true });
      const keys = join(base, 'all-keys');
      await cp(alpineKeys, keys, { recursive: true });
      await cp(repo.publicKeyPath, join(keys, repo.keyName));
      const ok = await run(apk(keys)[0]!, apk(keys).slice(1));
      expect(ok.stdout).toMatch(/Installing linux-virt/);
      expect(existsSync(join(base, 'target', 'boot', 'vmlinuz-virt'))).toBe(true);
      expect(existsSync(join(base, 'target', 'sbin', 'mkinitfs'))).toBe(true);
      expect(existsSync(join(base, 'target', 'usr', 'share', 'syslinux', 'mbr.bin'))).toBe(true);
    },
    120_000,
  );
});
