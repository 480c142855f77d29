// The accelerator probe: its guest programs run for real under QEMU/TCG, and on this kind of machine (a /dev/kvm
// that cannot run normal guests at hardware speed, or none at all) the choice is TCG, with the reason.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  aarch64ProbeImage,
  hostArch,
  PROBE_MARKER,
  probeAccelerator,
  runProbeGuest,
  x86ProbeSector,
} from '../../src/local/accel.js';

function has(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
const hasX86 = has('qemu-system-x86_64');
const hasArm = has('qemu-system-aarch64');
if (!hasX86)
  console.warn(
    'skipping x86_64 probe guest runs: qemu-system-x86_64 missing (apt-get install qemu-system-x86)',
  );
if (!hasArm)
  console.warn(
    'skipping aarch64 probe guest runs: qemu-system-aarch64 missing (apt-get install qemu-system-arm)',
  );

describe('probe guests', () => {
  it('x86: a 512-byte boot sector with the marker and the boot signature', () => {
    const s = x86ProbeSector();
    expect(s.length).toBe(512);
    expect(s[510]).toBe(0x55);
    expect(s[511]).toBe(0xaa);
    expect(s.toString('latin1')).toContain(PROBE_MARKER);
    // mov si, <address of the marker>: the pointer patched into the code points at it
    const msgAt = s.readUInt16LE(19) - 0x7c00;
    expect(s.toString('latin1', msgAt, msgAt + PROBE_MARKER.length)).toBe(PROBE_MARKER);
  });

  it('aarch64: a raw image whose ADR points at the marker', () => {
    const img = aarch64ProbeImage();
    const adr = img.readUInt32LE(5 * 4);
    const offset = ((adr >>> 5) & 0x7ffff) * 4 + ((adr >>> 29) & 3);
    expect(img.toString('latin1', 5 * 4 + offset, 5 * 4 + offset + PROBE_MARKER.length)).toBe(PROBE_MARKER);
  });

  it.skipIf(!hasX86)('the x86 guest prints the marker under TCG', async () => {
    const r = await runProbeGuest({ arch: 'x86_64', accel: 'tcg', timeoutMs: 30_000 });
    expect(r.ok).toBe(true);
    expect(r.output).toContain(PROBE_MARKER);
  });

  it.skipIf(!hasArm)('the aarch64 guest prints the marker under TCG', async () => {
    const r = await runProbeGuest({ arch: 'aarch64', accel: 'tcg', timeoutMs: 30_000 });
    expect(r.ok).toBe(true);
    expect(r.output).toContain(PROBE_MARKER);
  });

  it.skipIf(!hasX86)('a guest that cannot finish in time is reported as timed out', async () => {
    const r = await runProbeGuest({ arch: 'x86_64', accel: 'tcg', timeoutMs: 1 });
    expect(r.ok).toBe(false);
    expect(r.timedOut).toBe(true);
  });
});

describe('probeAccelerator', () => {
  it('TCG for a guest of another architecture', async () => {
    const other = hostArch() === 'x86_64' ? 'aarch64' : 'x86_64';
    const c = await probeAccelerator({ arch: other });
    expect(c).toEqual({
      accelerator: 'tcg',
      reason: `${other} guest on a ${hostArch()} host: KVM cannot run it`,
    });
  });

  it('TCG without a KVM device', async () => {
    const c = await probeAccelerator({ arch: hostArch(), kvmDevice: '/nonexistent/kvm' });
    expect(c.accelerator).toBe('tcg');
    expect(c.reason).toBe('/nonexistent/kvm is missing or not accessible');
  });

  it.skipIf(!hasX86 || hostArch() !== 'x86_64')(
    'on this machine: the choice and its reason',
    async () => {
      const c = await probeAccelerator({ arch: 'x86_64', timeoutMs: 5000 });
      console.log(`accelerator here: ${c.accelerator} (${c.reason})`);
      if (!existsSync('/dev/kvm')) {
        expect(c).toMatchObject({ accelerator: 'tcg', reason: '/dev/kvm is missing or not accessible' });
      } else if (c.accelerator === 'tcg') {
        // e.g. PVM: /dev/kvm opens but only emulates; the probe must not hang, and says why
        expect(c.reason).toMatch(
          /^\/dev\/kvm exists but the KVM probe guest (did not finish within 5000 ms|failed)/,
        );
        expect(c.probeMs).toBeLessThan(15_000);
      } else {
        expect(c.reason).toMatch(/KVM probe guest finished in \d+ ms/);
      }
    },
    30_000,
  );
});
