// Parity of the two builders on real Alpine packages (#10 item 6), and the boot test on the VM builder's image
// (#11 item 7). One variant, x86_64 BIOS tiny nocloud from the Alpine 3.19 mirror plus the signed stand-in
// repository, is built
//   - by the chroot builder (ensureTinyImage, shared with chroot-e2e and the boot-test e2e), and
//   - by the VM builder: Packer + QEMU (TCG) boot a stand-in of Alpine's virt ISO with the real Alpine userland
//     (test/fixtures/alpine-builder/make-iso.sh, signed by the test's release key), and the real scripts/setup
//     runs in that VM against the blank disk, installing from the mirror through Packer's HTTP server
//     (ensureVmTinyImage).
// Both root file systems are read without mounting (src/supply/disk.ts) and compared entry by entry: path,
// type, mode, owner, size, sha256, link target. Differences outside ALLOWED fail (docs/local-builds.md,
// "Parity of the two builders"). Then `./build test` boots the VM builder's image and runs every check.
import { cp, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { readDisk } from '../../src/supply/disk.js';
import { diffManifests, formatEntry, type ManifestEntry } from '../../src/supply/manifest.js';
import { bootUnavailable } from '../helpers/alpine-boot.js';
import { chrootUnavailable, ensureTinyImage, stepArgs, type TinyImage } from '../helpers/alpine-image.js';
import { ensureVmTinyImage, type VmTinyImage, vmBuildUnavailable } from '../helpers/alpine-vm-image.js';
import { runBuild } from '../helpers/cli.js';

const reason =
  (await chrootUnavailable('x86_64', 'bios')) ??
  (await vmBuildUnavailable()) ??
  bootUnavailable('x86_64', 'bios');
if (reason) console.warn(`skipping the builder parity test: ${reason}`);

/**
 * The documented allow-list (docs/local-builds.md): paths whose listed fields may differ between the builders,
 * and why. Everything else about them (type, mode, owner, and size unless listed) must still match.
 */
const ALLOWED: { path: RegExp; fields: string[]; why: string }[] = [
  {
    path: /^\/boot\/ldlinux\.sys$/,
    fields: ['sha256'],
    why: 'extlinux --install writes the file its own disk location: the VM builder puts ext4 on the whole disk, the chroot builder in a partition at 1 MiB',
  },
  {
    path: /^\/lib\/modules\/[^/]+\/modules\.(dep|alias|symbols)$/,
    fields: ['sha256'],
    why: "the stand-in kernel's busybox depmod (the mirror has no kmod) writes modules in directory order, which differs between the file systems it ran on",
  },
];

let base: string;
let chroot: TinyImage;
let vm: VmTinyImage;

beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), 'builder-parity-'));
});
afterAll(async () => {
  if (base) await rm(base, { recursive: true, force: true });
});

describe.skipIf(reason)(
  'the two builders on one variant (x86_64 BIOS tiny nocloud)',
  { timeout: 20 * 60_000 },
  () => {
    beforeAll(async () => {
      // one after the other: each wants both cores
      chroot = await ensureTinyImage('bios');
      vm = await ensureVmTinyImage();
    }, 25 * 60_000);

    it('the VM builder booted the signed Alpine stand-in ISO and ran the real scripts/setup in it against the disk', async () => {
      expect(vm.stderr).toMatch(/builder for x86_64 BIOS \(extlinux\): vm \(builder: vm is set\)/);
      expect(vm.stderr).toMatch(/verified alpine-virt-[\d.]+-x86_64\.iso: checksum and signature good/);
      expect(vm.stderr).toMatch(/local: 1 built, 0 failed/);
      const log = await readFile(vm.buildLog, 'utf8');
      // the builder is Alpine: OpenRC, the real userland
      expect(await readFile(vm.serialLog, 'utf8')).toMatch(/OpenRC 0\.52\.1 is starting up/);
      // scripts/setup, BUILDER=vm: a blank /dev/vda formatted in the VM, packages fetched from the mirror through
      // Packer's HTTP server (the --cdn-url substitution), with signature checks
      expect(log).toContain('==> Partitioning and formatting /dev/vda');
      expect(log).toMatch(/fetch http:\/\/10\.0\.2\.2:\d+\/cdn\/v3\.19\/main\/x86_64\/APKINDEX\.tar\.gz/);
      expect(log).toMatch(
        /fetch http:\/\/10\.0\.2\.2:\d+\/cdn\/v3\.19\/cib-standin\/x86_64\/APKINDEX\.tar\.gz/,
      );
      expect(log).toMatch(/Installing linux-virt/);
      expect(log).toContain('==> Base system installed on /dev/vda');
      expect(log).not.toMatch(/allow-untrusted|UNTRUSTED/);
    });

    it('gives the same file tree as the chroot builder, outside the documented allow-list', async () => {
      const [c, v] = [await readDisk(chroot.image), await readDisk(vm.image)];
      const cm = new Map<string, ManifestEntry>(c.manifest.entries.map((e) => [e.path, e]));
      const vmap = new Map<string, ManifestEntry>(v.manifest.entries.map((e) => [e.path, e]));
      const d = diffManifests(c.manifest, v.manifest);
      const unexpected: string[] = [];
      for (const p of d.removed) unexpected.push(`only the chroot builder's: ${formatEntry(cm.get(p)!)}`);
      for (const p of d.added) unexpected.push(`only the VM builder's: ${formatEntry(vmap.get(p)!)}`);
      const allowedSeen: string[] = [];
      for (const ch of d.changed) {
        const rule = ALLOWED.find((a) => a.path.test(ch.path));
        if (rule && ch.fields.every((f) => rule.fields.includes(f))) {
          allowedSeen.push(ch.path);
          continue;
        }
        unexpected.push(
          `${ch.path} differs in ${ch.fields.join(', ')}:\n  chroot ${formatEntry(cm.get(ch.path)!)}\n  vm     ${formatEntry(vmap.get(ch.path)!)}`,
        );
      }
      expect(unexpected, unexpected.join('\n')).toEqual([]);
      // a real comparison: thousands of entries, the same package database
      expect(c.manifest.entries.length).toBeGreaterThan(2000);
      expect(v.installedDb).toBe(c.installedDb);
      console.log(
        `builder parity: ${c.manifest.entries.length} entries, ${allowedSeen.length} allowed differences (${allowedSeen.join(', ') || 'none'})`,
      );
    });

    it('passes the boot test (./build test): the VM builder image boots and every check holds', async () => {
      // the build's work directory, as ./build local left it (the cached image is shared: work on a copy)
      const work = join(base, 'vm-work');
      await cp(join(vm.localDir, '..', '..', '..'), work, { recursive: true });
      const { env } = vm;
      const r = await runBuild(
        stepArgs('test', env, work, ['3.19', 'x86_64', 'bios', 'tiny', 'vm', 'nocloud']),
        { timeoutMs: 15 * 60_000 },
      );
      const localDir = join(work, 'images', 'nocloud', vm.localDir.split('/').pop()!);
      const meta = parse(await readFile(join(localDir, `${vm.imageName}.yaml`), 'utf8')) as Record<
        string,
        unknown
      >;
      const rec = meta.boot_test as Record<string, unknown>;
      if (r.code !== 0) console.error(r.stderr.slice(-8000));
      expect(rec.datasource).toBe('nocloud-vfat');
      const checks = rec.checks as { name: string; ok: boolean; detail?: string }[];
      expect(checks.map((c) => c.name)).toEqual(
        expect.arrayContaining(['ssh', 'hostname', 'user-data', 'poweroff']),
      );
      for (const c of checks) expect(c.ok, `${c.name}: ${c.detail}`).toBe(true);
      expect(rec.status).toBe('passed');
      expect(r.code).toBe(0);
      console.log(`boot test of the VM builder's image: ${JSON.stringify(rec.times)}`);
    });
  },
);
