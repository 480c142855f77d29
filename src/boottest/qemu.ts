// The boot test's VM: a throwaway copy-on-write overlay of the built image, QEMU with the variant's machine,
// firmware and arch under the accelerator chosen as for local builds, the serial console to a file, user
// networking with SSH forwarded to a free port on 127.0.0.1 (and, for clouds that read an instance-metadata
// service, that service's address forwarded to a server of ours).
//
// QEMU runs in a process group of its own, with the kernel's parent-death signal set (setpriv --pdeathsig), so
// neither a failed test, nor a signal to the build, nor a SIGKILL of the build leaves it running.
import { type ChildProcess, spawn } from 'node:child_process';
import { open, readFile, rm, stat } from 'node:fs/promises';
import { createServer } from 'node:net';
import { isAbsolute } from 'node:path';
import { execa } from 'execa';
import { UserError } from '../util/errors.js';

/** image_format -> qemu's format name of the file the test boots. */
export const QEMU_FORMATS: Readonly<Record<string, string>> = {
  qcow2: 'qcow2',
  vhd: 'vpc',
  vhdx: 'vhdx',
  vmdk: 'vmdk',
  raw: 'raw',
};

export interface VmSpec {
  arch: string;
  /** "pc", "q35", "virt" */
  machine: string;
  /** UEFI firmware file for -bios (UEFI variants), else undefined (SeaBIOS) */
  firmware?: string;
  /** -cpu, when the variant names one (aarch64: cortex-a57) */
  cpu?: string;
  accelerator: string;
  memoryMiB: number;
  cpus: number;
  /** the overlay (qcow2) */
  disk: string;
  /** the NoCloud seed volume, when the cloud reads one */
  seed?: string;
  serialLog: string;
  pidFile: string;
  sshPort: number;
  /** guest network and forwarded service address (instance-metadata stand-in) */
  guestNet?: { net: string; host: string; dns: string; dhcpStart: string };
  guestFwd?: { address: string; port: number; command: string };
}

/** QEMU's command line for a boot test (pure). */
export function qemuArgs(s: VmSpec): string[] {
  const accel = s.accelerator;
  const args = ['-machine', `${s.machine},accel=${accel}`];
  if (s.cpu) args.push('-cpu', s.cpu);
  args.push(
    '-m',
    String(s.memoryMiB),
    '-smp',
    String(s.cpus),
    '-nodefaults',
    '-display',
    'none',
    '-monitor',
    'none',
    '-no-reboot',
    '-chardev',
    `file,id=serial0,path=${optValue(s.serialLog)}`,
    '-serial',
    'chardev:serial0',
    '-pidfile',
    s.pidFile,
  );
  if (s.firmware) args.push('-bios', s.firmware);
  args.push(
    '-drive',
    `file=${optValue(s.disk)},format=qcow2,if=none,id=disk0,cache=unsafe`,
    '-device',
    'virtio-blk-pci,drive=disk0,bootindex=0',
  );
  if (s.seed) {
    args.push(
      '-drive',
      `file=${optValue(s.seed)},format=raw,if=none,id=seed0,readonly=on`,
      '-device',
      'virtio-blk-pci,drive=seed0',
    );
  }
  let netdev = `user,id=net0,hostfwd=tcp:127.0.0.1:${s.sshPort}-:22`;
  if (s.guestNet) {
    const n = s.guestNet;
    netdev += `,net=${n.net},host=${n.host},dns=${n.dns},dhcpstart=${n.dhcpStart}`;
  }
  if (s.guestFwd) {
    const f = s.guestFwd;
    netdev += `,guestfwd=tcp:${f.address}:${f.port}-cmd:${optValue(f.command)}`;
  }
  // romfile= : no iPXE option ROM (nothing boots from the network; it only costs time under TCG)
  args.push('-netdev', netdev, '-device', 'virtio-net-pci,netdev=net0,romfile=');
  // entropy: sshd's key generation does not wait for the kernel's pool under TCG
  args.push('-device', 'virtio-rng-pci');
  return args;
}

/** QEMU option values are comma-separated: a comma in a value is written twice. */
export function optValue(v: string): string {
  return v.replace(/,/g, ',,');
}

/** The qemu machine for a variant: its qemu.machine_type, else virt on aarch64 and pc on x86_64. */
export function machineFor(arch: string, configured: unknown): string {
  if (typeof configured === 'string' && configured) return configured;
  return arch === 'aarch64' ? 'virt' : 'pc';
}

/** -cpu from the variant's qemu.args (e.g. [["-cpu", "cortex-a57"]]); aarch64 defaults to cortex-a57. */
export function cpuFor(arch: string, args: unknown, accelerator: string): string | undefined {
  if (Array.isArray(args)) {
    for (const a of args) {
      if (Array.isArray(a) && a[0] === '-cpu' && typeof a[1] === 'string') return a[1];
    }
  }
  if (arch !== 'aarch64') return undefined;
  return accelerator === 'kvm' ? 'host' : 'cortex-a57';
}

/** A free TCP port on 127.0.0.1 (the OS picks it). */
export async function freePort(): Promise<number> {
  return await new Promise<number>((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** The virtual size of a disk image, in bytes. */
export async function virtualSize(image: string, format: string): Promise<number> {
  const info = await execa('qemu-img', ['info', '--output=json', '-f', format, image], {
    reject: false,
    stdin: 'ignore',
  });
  if (info.exitCode !== 0) {
    if (info.exitCode === undefined) throw new UserError('qemu-img is not installed (Debian: qemu-utils)');
    throw new UserError(`${image}: qemu-img cannot read it as ${format}: ${String(info.stderr).trim()}`);
  }
  return Number((JSON.parse(String(info.stdout)) as { 'virtual-size': number })['virtual-size']);
}

/**
 * How much larger than the image the test disk is: a quarter of the image, at least 64 MiB (in whole MiB), so
 * that a root file system that did not grow is clearly smaller than its disk.
 */
export function growthMiB(imageBytes: number): number {
  return Math.max(64, Math.ceil(imageBytes / 4 / 2 ** 20));
}

/** A copy-on-write overlay of `image` (which is never written) of `sizeBytes`. */
export async function createOverlay(
  image: string,
  format: string,
  overlay: string,
  sizeBytes: number,
): Promise<void> {
  if (!isAbsolute(image)) throw new Error(`overlay backing file must be absolute: ${image}`);
  const r = await execa(
    'qemu-img',
    ['create', '-q', '-f', 'qcow2', '-F', format, '-b', image, overlay, String(sizeBytes)],
    { reject: false, all: true, stdin: 'ignore' },
  );
  if (r.exitCode !== 0) throw new UserError(`qemu-img create ${overlay} failed: ${String(r.all).trim()}`);
}

export interface RunningVm {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly startedAt: number;
  /** resolves with QEMU's exit code (or signal) once it has exited */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** QEMU's own stderr (errors about its command line, firmware, disk) */
  stderr(): string;
  /** SIGKILL the whole process group (QEMU and its guestfwd helpers) and wait for QEMU to be gone */
  kill(): Promise<void>;
}

/** Wrap QEMU in `setpriv --pdeathsig KILL` when setpriv exists: it dies with the build, even on SIGKILL. */
export async function pdeathsigWrapper(): Promise<string[]> {
  for (const p of ['/usr/bin/setpriv', '/bin/setpriv']) {
    try {
      await stat(p);
      return [p, '--pdeathsig', 'KILL', '--'];
    } catch {
      // next
    }
  }
  return [];
}

/** Start QEMU in its own process group. */
export function startVm(binary: string, args: readonly string[], wrapper: readonly string[]): RunningVm {
  const [cmd, ...pre] = wrapper.length > 0 ? wrapper : [binary];
  const argv = wrapper.length > 0 ? [...pre, binary, ...args] : [...args];
  const child = spawn(cmd!, argv, { detached: true, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr?.on('data', (b: Buffer) => {
    err += b.toString('utf8');
    if (err.length > 16_384) err = err.slice(-16_384);
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
    child.once('error', (e) => {
      err += `${(e as Error).message}\n`;
      resolve({ code: 127, signal: null });
    });
  });
  const pid = child.pid ?? -1;
  return {
    child,
    pid,
    startedAt: Date.now(),
    exited,
    stderr: () => err.trim(),
    kill: async () => {
      killGroup(pid);
      await exited;
    },
  };
}

/** SIGKILL a process group (ignores a group that is already gone). */
export function killGroup(pid: number): void {
  if (pid <= 0) return;
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

/** Reads the serial log as it grows (QEMU writes it; we poll its size). */
export class SerialWatcher {
  private offset = 0;
  private text = '';
  constructor(readonly path: string) {}

  /** Read what was added since the last call; returns the whole text so far. */
  async poll(): Promise<string> {
    let fh: Awaited<ReturnType<typeof open>>;
    try {
      fh = await open(this.path, 'r');
    } catch {
      return this.text;
    }
    try {
      const { size } = await fh.stat();
      if (size > this.offset) {
        const buf = Buffer.alloc(size - this.offset);
        await fh.read(buf, 0, buf.length, this.offset);
        this.offset = size;
        this.text += buf.toString('latin1');
      }
    } finally {
      await fh.close();
    }
    return this.text;
  }

  get all(): string {
    return this.text;
  }
}

/** The last `n` lines of a console log, without control characters, for failure messages. */
export function serialTail(text: string, n = 15): string {
  const clean = text
    .replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '')
    .replace(/\r/g, '')
    .replace(/[\x00-\x08\x0b-\x1f\x7f]/g, '');
  const lines = clean.split('\n').filter((l) => l.trim() !== '');
  return lines.slice(-n).join('\n');
}

/** Console output that means the boot cannot succeed: fail now instead of waiting for the time limit. */
export const FATAL_CONSOLE = [
  /Kernel panic - not syncing/,
  /crc error/i,
  /System halted/,
  /No bootable device/i,
  /Boot failed: /,
  /error: (?:invalid magic number|file `[^']*' not found|you need to load the kernel first)/,
  /Could not find kernel image/i,
  /Invalid or corrupt kernel image/i,
  /^Loading \S+ failed/m,
  /invalid compressed format/i,
  /initramfs: (?:no |cannot mount)/,
];

export function fatalConsoleLine(text: string): string | undefined {
  for (const re of FATAL_CONSOLE) {
    const m = re.exec(text);
    if (m) {
      const start = text.lastIndexOf('\n', m.index) + 1;
      const end = text.indexOf('\n', m.index);
      return text
        .slice(start, end < 0 ? undefined : end)
        .replace(/\r/g, '')
        .trim();
    }
  }
  return undefined;
}

/** Read QEMU's pid file (stale-run cleanup). */
export async function readPid(path: string): Promise<number | undefined> {
  try {
    const n = Number((await readFile(path, 'utf8')).trim());
    return Number.isInteger(n) && n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}

export async function removeQuietly(...paths: string[]): Promise<void> {
  await Promise.all(paths.map((p) => rm(p, { recursive: true, force: true }).catch(() => {})));
}
