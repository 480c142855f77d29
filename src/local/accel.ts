// Which QEMU accelerator the builds use: KVM only when it really runs a guest at hardware speed, else TCG.
//
// A /dev/kvm that opens is not enough: nested or paravirtual KVM (e.g. PVM) may accept a VM and then emulate
// every instruction (100x slower than TCG) or fail part way with "emulation failure". So the probe boots a
// tiny guest under KVM that spins through a counted loop and then prints a marker on its serial port; real
// KVM finishes in well under a second, anything that takes longer than the time limit is not worth using.
import { constants } from 'node:fs';
import { access, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';

export type Accelerator = 'kvm' | 'tcg';

export interface AccelChoice {
  /** what QEMU gets as accel= (the probe chooses kvm or tcg; a --vars file may name any QEMU accelerator) */
  accelerator: string;
  /** why it was chosen, for the log */
  reason: string;
  /** probe wall time in ms, when a probe ran */
  probeMs?: number;
}

export const PROBE_MARKER = 'KVM-PROBE-OK';

/** Loop iterations in the probe guest: ~0.1 s on KVM, well under a second on TCG, minutes when emulated. */
const PROBE_LOOPS = 100_000_000;

/** Host architecture in the names the images use. */
export function hostArch(): string {
  switch (process.arch) {
    case 'x64':
      return 'x86_64';
    case 'arm64':
      return 'aarch64';
    default:
      return process.arch;
  }
}

function u32le(n: number): number[] {
  return [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff];
}

/**
 * x86 boot sector (real mode, loaded at 0x7c00 by the BIOS): count ECX down from PROBE_LOOPS, write the marker
 * to COM1 (0x3f8), then load an empty IDT and trap, which triple-faults (QEMU exits with -no-reboot).
 */
export function x86ProbeSector(loops = PROBE_LOOPS): Buffer {
  const msg = Buffer.from(`${PROBE_MARKER}\r\n\0`, 'latin1');
  const code: number[] = [
    0xfa, // cli
    0x31,
    0xc0, // xor ax,ax
    0x8e,
    0xd8, // mov ds,ax
    0x66,
    0xb9,
    ...u32le(loops), // mov ecx,loops
    0x66,
    0x49, // .spin: dec ecx
    0x75,
    0xfc, // jnz .spin
    0xba,
    0xf8,
    0x03, // mov dx,0x3f8
    0xbe,
    0,
    0, // mov si,msg            (patched below)
    0xac, // .out: lodsb
    0x84,
    0xc0, // test al,al
    0x74,
    0x03, // jz .done
    0xee, // out dx,al
    0xeb,
    0xf8, // jmp .out
    0x0f,
    0x01,
    0x1e,
    0,
    0, // .done: lidt [idt]  (patched below)
    0xcc, // int3 -> triple fault
    0xf4, // .halt: hlt
    0xeb,
    0xfd, // jmp .halt
  ];
  const msgAt = 0x7c00 + code.length;
  const idtAt = msgAt + msg.length;
  code[19] = msgAt & 0xff;
  code[20] = msgAt >> 8;
  code[32] = idtAt & 0xff;
  code[33] = idtAt >> 8;
  const sector = Buffer.alloc(512);
  Buffer.from(code).copy(sector, 0);
  msg.copy(sector, code.length);
  // 6 zero bytes of IDT descriptor follow (the buffer is zero-filled)
  sector[510] = 0x55;
  sector[511] = 0xaa;
  return sector;
}

/**
 * AArch64 bare-metal image for `-M virt -kernel` (MMU off): count x2 down, write the marker to the PL011 UART
 * at 0x09000000, then PSCI SYSTEM_OFF through HVC.
 */
export function aarch64ProbeImage(loops = PROBE_LOOPS): Buffer {
  const lo = loops & 0xffff;
  const hi = (loops >>> 16) & 0xffff;
  const words = [
    0xd2a12001, // movz x1, #0x0900, lsl #16
    0xd2800002 | (lo << 5), // movz x2, #lo
    0xf2a00002 | (hi << 5), // movk x2, #hi, lsl #16
    0xf1000442, // 1: subs x2, x2, #1
    0x54ffffe1, // b.ne 1b
    0x10000143, // adr x3, msg (+40)
    0x38401464, // 2: ldrb w4, [x3], #1
    0x34000064, // cbz w4, 3f
    0x39000024, // strb w4, [x1]
    0x17fffffd, // b 2b
    0x52800100, // 3: movz w0, #0x0008
    0x72b08000, // movk w0, #0x8400, lsl #16   (PSCI SYSTEM_OFF)
    0xd4000002, // hvc #0
    0xd503207f, // 4: wfi
    0x17ffffff, // b 4b
  ];
  const code = Buffer.alloc(words.length * 4);
  words.forEach((w, i) => {
    code.writeUInt32LE(w >>> 0, i * 4);
  });
  return Buffer.concat([code, Buffer.from(`${PROBE_MARKER}\n\0`, 'latin1')]);
}

export interface ProbeOptions {
  /** guest architecture */
  arch: string;
  /** QEMU binary (default qemu-system-<arch>) */
  qemuBinary?: string;
  /** give up on KVM after this long (default 8 s) */
  timeoutMs?: number;
  /** the KVM device (default /dev/kvm) */
  kvmDevice?: string;
  /** accelerator to probe (tests run the probe guest under TCG) */
  accel?: Accelerator;
}

export interface ProbeRun {
  ok: boolean;
  ms: number;
  output: string;
  timedOut: boolean;
}

/** Boot the probe guest once under `accel` and report whether the marker appeared in time. */
export async function runProbeGuest(opts: ProbeOptions & { accel: Accelerator }): Promise<ProbeRun> {
  const arch = opts.arch;
  const qemu = opts.qemuBinary ?? `qemu-system-${arch}`;
  const timeoutMs = opts.timeoutMs ?? 8000;
  const dir = await mkdtemp(join(tmpdir(), 'accel-probe-'));
  try {
    let args: string[];
    if (arch === 'x86_64') {
      const img = join(dir, 'probe.img');
      await writeFile(img, x86ProbeSector());
      args = ['-machine', `pc,accel=${opts.accel}`, '-drive', `file=${img},format=raw,if=ide`];
    } else if (arch === 'aarch64') {
      const img = join(dir, 'probe.bin');
      await writeFile(img, aarch64ProbeImage());
      const cpu = opts.accel === 'kvm' ? 'host' : 'cortex-a57';
      args = ['-machine', `virt,accel=${opts.accel}`, '-cpu', cpu, '-kernel', img];
    } else {
      return { ok: false, ms: 0, output: `no probe guest for ${arch}`, timedOut: false };
    }
    args.push(
      '-nodefaults',
      '-display',
      'none',
      '-serial',
      'stdio',
      '-monitor',
      'none',
      '-no-reboot',
      '-m',
      '64',
    );
    const t0 = Date.now();
    const child = execa(qemu, args, { reject: false, stdin: 'ignore', all: true, buffer: false });
    let output = '';
    let ok = false;
    const seen = new Promise<void>((resolve) => {
      child.all?.on('data', (chunk: Buffer) => {
        output += chunk.toString('latin1');
        if (output.includes(PROBE_MARKER)) {
          ok = true;
          resolve();
        }
      });
      child.all?.on('end', () => resolve());
    });
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      seen.then(() => false),
      child.then(() => false),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(true), timeoutMs);
      }),
    ]);
    clearTimeout(timer);
    const ms = Date.now() - t0;
    if (child.exitCode === null) child.kill('SIGKILL');
    await child;
    return { ok, ms, output: output.trim(), timedOut: timedOut && !ok };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * Choose the accelerator for guests of `arch` on this host. Never throws: any doubt means TCG.
 */
export async function probeAccelerator(opts: ProbeOptions): Promise<AccelChoice> {
  const host = hostArch();
  if (opts.arch !== host) {
    return { accelerator: 'tcg', reason: `${opts.arch} guest on a ${host} host: KVM cannot run it` };
  }
  const dev = opts.kvmDevice ?? '/dev/kvm';
  try {
    await access(dev, constants.R_OK | constants.W_OK);
  } catch {
    return { accelerator: 'tcg', reason: `${dev} is missing or not accessible` };
  }
  let run: ProbeRun;
  try {
    run = await runProbeGuest({ ...opts, accel: opts.accel ?? 'kvm' });
  } catch (err) {
    return { accelerator: 'tcg', reason: `KVM probe could not run: ${(err as Error).message}` };
  }
  if (run.ok) {
    return { accelerator: 'kvm', reason: `KVM probe guest finished in ${run.ms} ms`, probeMs: run.ms };
  }
  const detail = run.timedOut
    ? `did not finish within ${opts.timeoutMs ?? 8000} ms (KVM is present but not usable at hardware speed, e.g. nested/paravirtual)`
    : `failed: ${lastLine(run.output) || 'no output'}`;
  return { accelerator: 'tcg', reason: `${dev} exists but the KVM probe guest ${detail}`, probeMs: run.ms };
}

function lastLine(s: string): string {
  const lines = s.split(/\r?\n/).filter((l) => l.trim());
  return (lines[lines.length - 1] ?? '').slice(0, 200);
}
