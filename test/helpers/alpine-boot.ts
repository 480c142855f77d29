// Boot a disk image under QEMU (TCG) with a NoCloud seed and wait for a pattern on the serial console.
//
//   bootImage(image, opts)  x86_64 BIOS (SeaBIOS), x86_64 UEFI (q35 + OVMF pflash) or aarch64 (virt, cortex-a57,
//                           AAVMF); the image is never written (a qcow2 overlay in opts.workDir); the seed is a
//                           vfat `cidata` disk with meta-data (instance-id, hostname) and an optional user-data
//                           script. Resolves with the console text and the time to the pattern.
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface BootOptions {
  arch?: 'x86_64' | 'aarch64';
  firmware?: 'bios' | 'uefi';
  format?: string;
  /** NoCloud meta-data hostname (default cib-boot) */
  hostname?: string;
  /** a `#!/bin/sh` user-data script (tiny-cloud runs it in its final phase) */
  userData?: string;
  /** default: /login:/ */
  pattern?: RegExp;
  timeoutMs?: number;
  workDir: string;
}

export interface BootResult {
  ok: boolean;
  ms: number;
  console: string;
}

export const UEFI_FIRMWARE = {
  x86_64: { code: '/usr/share/OVMF/OVMF_CODE_4M.fd', vars: '/usr/share/OVMF/OVMF_VARS_4M.fd' },
  aarch64: { code: '/usr/share/AAVMF/AAVMF_CODE.fd', vars: '/usr/share/AAVMF/AAVMF_VARS.fd' },
} as const;

/** Why this machine cannot boot the configuration, or undefined. */
export function bootUnavailable(arch: 'x86_64' | 'aarch64', firmware: 'bios' | 'uefi'): string | undefined {
  const qemu = `/usr/bin/qemu-system-${arch}`;
  if (!existsSync(qemu)) return `no ${qemu}`;
  if (firmware === 'uefi' || arch === 'aarch64') {
    const fw = UEFI_FIRMWARE[arch];
    if (!existsSync(fw.code) || !existsSync(fw.vars)) return `no UEFI firmware ${fw.code}`;
  }
  return undefined;
}

export async function bootImage(image: string, opts: BootOptions): Promise<BootResult> {
  const arch = opts.arch ?? 'x86_64';
  const firmware = arch === 'aarch64' ? 'uefi' : (opts.firmware ?? 'bios');
  const dir = await mkdtemp(join(opts.workDir, 'boot-'));
  try {
    const overlay = join(dir, 'root.qcow2');
    await run('qemu-img', [
      'create',
      '-q',
      '-f',
      'qcow2',
      '-F',
      opts.format ?? 'qcow2',
      '-b',
      image,
      overlay,
    ]);
    const seed = join(dir, 'seed.img');
    const host = opts.hostname ?? 'cib-boot';
    await writeFile(
      join(dir, 'meta-data'),
      `instance-id: i-${host}\nhostname: ${host}\nlocal-hostname: ${host}\n`,
    );
    const seedFiles = [join(dir, 'meta-data')];
    if (opts.userData) {
      await writeFile(join(dir, 'user-data'), opts.userData);
      seedFiles.push(join(dir, 'user-data'));
    }
    await run('mkfs.vfat', ['-n', 'CIDATA', '-C', seed, '1024']);
    await run('mcopy', ['-i', seed, ...seedFiles, '::/']);
    const args = [
      '-accel',
      'tcg',
      '-m',
      '512',
      '-smp',
      '2',
      '-display',
      'none',
      '-monitor',
      'none',
      '-serial',
      'stdio',
      '-no-reboot',
      '-nic',
      'user,model=virtio-net-pci',
      '-device',
      'virtio-rng-pci',
      '-drive',
      `file=${overlay},format=qcow2,if=virtio`,
      '-drive',
      `file=${seed},format=raw,if=virtio,readonly=on`,
    ];
    if (arch === 'aarch64') args.push('-machine', 'virt', '-cpu', 'cortex-a57');
    else if (firmware === 'uefi') args.push('-machine', 'q35');
    if (firmware === 'uefi') {
      const fw = UEFI_FIRMWARE[arch];
      const vars = join(dir, 'vars.fd');
      await copyFile(fw.vars, vars);
      args.push(
        '-drive',
        `if=pflash,format=raw,unit=0,readonly=on,file=${fw.code}`,
        '-drive',
        `if=pflash,format=raw,unit=1,file=${vars}`,
      );
    }
    const pattern = opts.pattern ?? /login:/;
    const t0 = Date.now();
    const child = spawn(`qemu-system-${arch}`, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const ok = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), opts.timeoutMs ?? 300_000);
      const onData = (b: Buffer) => {
        out += b.toString('latin1');
        if (pattern.test(out)) {
          clearTimeout(timer);
          resolve(true);
        }
      };
      child.stdout.on('data', onData);
      child.stderr.on('data', onData);
      child.on('exit', () => {
        clearTimeout(timer);
        resolve(pattern.test(out));
      });
    });
    const ms = Date.now() - t0;
    if (child.exitCode === null) child.kill('SIGKILL');
    await new Promise((r) =>
      child.exitCode === null && child.signalCode === null ? child.once('exit', r) : r(null),
    );
    return { ok, ms, console: out };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
