// Time per boot test (the `test` step, src/boottest) on this machine: boots small images with a real Alpine 3.19
// userland (tiny-cloud 3.0.7, OpenRC, OpenSSH; Debian's cloud kernel as the stand-in kernel; built by
// test/helpers/boot-images.ts and cached) and prints, per configuration and run, the phases the test records
// (login prompt, SSH, poweroff, total) and the tool's own share (everything outside the guest's boot and
// shutdown: overlay, seed, QEMU start, SSH handshake, checks).
//   configurations: x86_64 BIOS and UEFI with the trimmed service set (machine notes' configuration C), BIOS with
//   alpine-cloud-images' service set ("full"), with and without OpenRC's rc_parallel (the default proposal)
//   aarch64: the chroot builder's 3.19 aarch64 UEFI tiny nocloud image (official config, full service set) on
//   the virt machine with AAVMF; its userland is the stand-in repository's aarch64 one (Alpine's noarch
//   packages + Debian-built stand-ins, test/helpers/alpine-standin-userland.ts), checked against its own
//   resolved config from images.yaml
// Target under TCG: at most 90 s for an x86_64 tiny image, 3 min for aarch64; with KVM under 15 s.
// Run: npx tsx bench/boot-test.ts [--runs N] [--only bios,uefi,full,full-parallel,aarch64]   (needs root and the mirror)

import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Reaper, testImage } from '../src/boottest/run.js';
import { getCloud } from '../src/clouds/index.js';
import { loadImagesYaml } from '../src/config/index.js';
import type { ImageConfig } from '../src/config/types.js';
import { probeAccelerator } from '../src/local/accel.js';
import { HOST_FIRMWARE } from '../src/local/firmware.js';
import { Image } from '../src/state/image.js';
import { emptyState, stateAfter } from '../src/state/image-state.js';
import { silentLogger } from '../src/util/log.js';
import { sampleConfig } from '../test/fixtures/local/sample.js';
import { chrootUnavailable, ensureTinyImage } from '../test/helpers/alpine-image.js';
import { bootImagesUnavailable, ensureBootImage, type ImageVariant } from '../test/helpers/boot-images.js';

const args = process.argv.slice(2);
const runs = Number(args[args.indexOf('--runs') + 1] ?? 1) || 1;
const onlyArg = args.includes('--only') ? args[args.indexOf('--only') + 1] : undefined;

const CONFIGS: {
  name: string;
  firmware: 'bios' | 'uefi';
  variant: ImageVariant | 'aarch64-tiny';
  services: string[];
}[] = [
  { name: 'bios', firmware: 'bios', variant: 'trimmed', services: ['networking', 'sshd'] },
  { name: 'uefi', firmware: 'uefi', variant: 'trimmed', services: ['networking', 'sshd'] },
  { name: 'full', firmware: 'bios', variant: 'full', services: ['networking', 'sshd', 'chronyd', 'crond'] },
  {
    name: 'full-parallel',
    firmware: 'bios',
    variant: 'full-parallel',
    services: ['networking', 'sshd', 'chronyd', 'crond'],
  },
  // services, packages, motd, kernel options: the image's own resolved config
  { name: 'aarch64', firmware: 'uefi', variant: 'aarch64-tiny', services: [] },
];

const selected = CONFIGS.filter((c) => !onlyArg || onlyArg.split(',').includes(c.name));
const why = selected.some((c) => c.variant !== 'aarch64-tiny') ? await bootImagesUnavailable() : undefined;
if (why) {
  console.log(`boot-test bench skipped: ${why}`);
  process.exit(0);
}
const whyArm = selected.some((c) => c.variant === 'aarch64-tiny')
  ? await chrootUnavailable('aarch64', 'uefi')
  : undefined;
if (whyArm) console.log(`boot-test bench: aarch64 skipped: ${whyArm}`);
const accel = await probeAccelerator({ arch: 'x86_64', timeoutMs: 5000 });
// an aarch64 guest on this host: TCG whatever KVM does for x86_64 guests
const accelArm = await probeAccelerator({ arch: 'aarch64', timeoutMs: 5000 });
console.log(
  `host: ${cpus().length} cores, load ${loadavg()[0]!.toFixed(1)}; accelerator ${accel.accelerator} (${accel.reason}); aarch64: ${accelArm.accelerator} (${accelArm.reason})`,
);
const work = await mkdtemp(join(tmpdir(), 'bench-boot-'));
const reaper = new Reaper();
reaper.install();
const rows: string[][] = [['config', 'run', 'login', 'ssh', 'poweroff', 'total', 'tool', 'result']];
try {
  for (const cfg of selected) {
    const arm = cfg.variant === 'aarch64-tiny';
    if (arm && whyArm) continue;
    let file: string;
    let armConfig: ImageConfig | undefined;
    if (cfg.variant === 'aarch64-tiny') {
      const t0 = Date.now();
      const tiny = await ensureTinyImage('uefi', 'aarch64', 'tiny');
      console.log(
        `aarch64 image ready in ${((Date.now() - t0) / 1000).toFixed(1)} s (cached after the first build)`,
      );
      file = tiny.image;
      const images = await loadImagesYaml(join(tiny.localDir, '..', '..', '..', 'images.yaml'));
      armConfig = images?.[tiny.configKey];
      if (!armConfig) throw new Error(`no ${tiny.configKey} in the image's images.yaml`);
    } else {
      file = await ensureBootImage({ firmware: cfg.firmware, cloud: 'nocloud', variant: cfg.variant });
    }
    for (let i = 1; i <= runs; i++) {
      // a typed configuration (an untyped one with the old joined strings went stale with the typed config)
      const fixture = sampleConfig({
        config_key: `bench-${cfg.name}`,
        image_key: `bench-${cfg.name}`,
        name: `bench-${cfg.name}-r{revision}`,
        arch: 'x86_64',
        firmware: cfg.firmware,
        bootstrap: 'tiny',
        cloud: 'nocloud',
        login: 'alpine',
        image_format: 'qcow2',
        motd: 'Welcome to Alpine!',
        packages: { add: ['alpine-base', 'openssh', 'tiny-cloud'], del: [], noscripts: [] },
        services: { enable: { default: cfg.services }, disable: {} },
        kernel_options: ['console=ttyS0,115200'],
        qemu: {},
      });
      const config = armConfig
        ? ({
            ...armConfig,
            config_key: `bench-${cfg.name}`,
            image_key: `bench-${cfg.name}`,
            name: `bench-${cfg.name}-r{revision}`,
          } as ImageConfig)
        : fixture;
      const image = new Image(config, work, stateAfter.built(emptyState(), new Date().toISOString()));
      const { mkdir, link, rm: rmf } = await import('node:fs/promises');
      await mkdir(image.localDir, { recursive: true });
      await rmf(image.imagePath, { force: true });
      await link(file, image.imagePath).catch(async () =>
        (await import('node:fs/promises')).copyFile(file, image.imagePath),
      );
      const t0 = Date.now();
      const rec = await testImage(image, {
        log: silentLogger(),
        workDir: work,
        reaper,
        accelerator: async () => (arm ? accelArm : accel),
        firmware: async () =>
          arm ? HOST_FIRMWARE.aarch64!.find((f) => existsSync(f))! : '/usr/share/ovmf/OVMF.fd',
        cloud: getCloud,
      });
      const wall = (Date.now() - t0) / 1000;
      const t = rec.times ?? {};
      // the guest's own time is power-on to login prompt plus the shutdown; the rest is the tool's
      const guest = (t.login_prompt ?? 0) + (t.poweroff ?? 0);
      rows.push([
        cfg.name,
        String(i),
        `${t.login_prompt ?? '-'}`,
        `${t.ssh ?? '-'}`,
        `${t.poweroff ?? '-'}`,
        wall.toFixed(1),
        (wall - guest).toFixed(1),
        rec.status === 'passed' ? 'passed' : `FAILED: ${(rec.error ?? '').split('\n')[0]}`,
      ]);
      console.log(rows[rows.length - 1]!.join('  '));
    }
  }
} finally {
  reaper.uninstall();
  await rm(work, { recursive: true, force: true });
}
const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
console.log('\nseconds since QEMU started; total = the whole test (wall); tool = total - (login + poweroff)');
for (const r of rows) console.log(r.map((c, i) => c.padEnd(widths[i]!)).join('  '));
