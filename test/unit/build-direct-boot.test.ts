// Direct kernel boot pieces: the apkovl (a real tar.gz, checked with GNU tar), the one-time key (checked with
// ssh-keygen), the kernel command line, and the escape-stripping of Packer's output.
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  APKOVL_NAME,
  builderApkovl,
  builderCmdline,
  oneTimeKey,
  prepareBuilderBoot,
} from '../../src/local/direct-boot.js';
import {
  consoleTail,
  PackerFailure,
  packerFailureMessage,
  stripTerminal,
} from '../../src/local/packer-output.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'direct-boot-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('builder apkovl and key', () => {
  it('is a gzip tarball of root-owned files with the modes sshd insists on', async () => {
    const key = oneTimeKey();
    const file = join(dir, 'ovl.tar.gz');
    await writeFile(file, builderApkovl({ authorizedKey: key.publicOpenSsh }));
    const list = execFileSync('tar', ['-tvzf', file], { encoding: 'utf8' });
    expect(list).toMatch(/^drwx------ root\/root .* root\/\.ssh\/$/m);
    expect(list).toMatch(/^-rw------- root\/root .* root\/\.ssh\/authorized_keys$/m);
    expect(list).toMatch(/^lrwxrwxrwx root\/root .* etc\/runlevels\/default\/sshd -> \/etc\/init\.d\/sshd$/m);
    expect(list).toMatch(/etc\/runlevels\/default\/networking -> \/etc\/init\.d\/networking/);
    expect(list).toMatch(/etc\/\.default_boot_services$/m);
    const out = join(dir, 'x');
    await mkdir(out, { recursive: true });
    execFileSync('tar', ['-xzf', file, '-C', out]);
    expect(await readFile(join(out, 'root/.ssh/authorized_keys'), 'utf8')).toBe(`${key.publicOpenSsh}\n`);
    expect(await readFile(join(out, 'etc/network/interfaces'), 'utf8')).toMatch(/iface eth0 inet dhcp/);
    expect(await readFile(join(out, 'etc/conf.d/sshd'), 'utf8')).toContain('key_types_to_generate="ed25519"');
  });

  it('makes a fresh ed25519 pair each time whose public half OpenSSH derives from the private one', async () => {
    const a = oneTimeKey();
    const b = oneTimeKey();
    expect(a.publicOpenSsh).not.toBe(b.publicOpenSsh);
    expect(a.publicOpenSsh).toMatch(/^ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI[A-Za-z0-9+/]+=* /);
    const kf = join(dir, 'k');
    await writeFile(kf, a.privatePem, { mode: 0o600 });
    const derived = execFileSync('ssh-keygen', ['-y', '-f', kf], { encoding: 'utf8' });
    expect(derived.trim().split(' ').slice(0, 2)).toEqual(a.publicOpenSsh.split(' ').slice(0, 2));
  });

  it('writes the apkovl (public data only) and a private key readable by the owner alone', async () => {
    const b = await prepareBuilderBoot(join(dir, 'build'), { kernel: '/k', initrd: '/i' }, 'aarch64');
    expect((await stat(b.sshKeyFile)).mode & 0o777).toBe(0o600);
    expect((await stat(join(b.httpDirectory, APKOVL_NAME))).size).toBeGreaterThan(100);
    expect(b.qemuargs[0]).toEqual(['-kernel', '/k']);
    expect(b.qemuargs[1]).toEqual(['-initrd', '/i']);
    expect(b.qemuargs[2]?.[1]).toContain('console=ttyAMA0');
  });

  it('puts networking and the apkovl URL on the kernel command line', () => {
    const c = builderCmdline('x86_64', 'quiet');
    expect(c).toContain('console=ttyS0,115200');
    expect(c).toContain('ip=dhcp');
    expect(c).toContain(`apkovl=http://{{ .HTTPIP }}:{{ .HTTPPort }}/${APKOVL_NAME}`);
    expect(c.endsWith(' quiet')).toBe(true);
  });
});

describe("Packer's output", () => {
  const ts = '2026-11-29T09:00:00Z: ';
  it('strips colours, OSC sequences and control characters', () => {
    expect(stripTerminal('\x1b[1;31mBuild failed\x1b[0m')).toBe('Build failed');
    expect(stripTerminal('\x1b]0;title\x07text\r')).toBe('text');
    expect(stripTerminal('a\x1b[2Kb\x1b(Bc')).toBe('abc');
  });

  it("finds Packer's error in a coloured line once it is stripped", () => {
    const f = new PackerFailure();
    const lines = [
      `\x1b[1;32m${ts}==> alpine.qemu.alpine: Waiting for SSH to become available...\x1b[0m`,
      `\x1b[0;32m${ts}    alpine.qemu.alpine: setup: /dev/vda is not blank\x1b[0m`,
      `\x1b[1;31m${ts}==> alpine.qemu.alpine: Timeout waiting for SSH.\x1b[0m`,
      `\x1b[1;31m${ts}Build 'alpine.qemu.alpine' errored after 3 minutes: Timeout waiting for SSH.\x1b[0m`,
    ];
    for (const l of lines) f.add(stripTerminal(l));
    expect(f.summary.error).toBe('Timeout waiting for SSH.');
    expect(f.summary.recent).toEqual(['setup: /dev/vda is not blank', 'Timeout waiting for SSH.']);
    const msg = packerFailureMessage(1, f.summary, ['initrd: no DHCP lease on eth0']);
    expect(msg).toMatch(/^packer build failed \(exit 1\): Timeout waiting for SSH\./);
    expect(msg).toContain("last lines on the builder VM's console:\n    initrd: no DHCP lease on eth0");
    expect(msg).not.toContain('\x1b');
  });

  it("reads the last lines of the VM's console, escapes removed", async () => {
    const f = join(dir, 'serial.log');
    await writeFile(f, 'one\r\n\x1b[32mtwo\x1b[0m\r\n\r\nthree\n');
    expect(await consoleTail(f, 2)).toEqual(['two', 'three']);
    expect(await consoleTail(join(dir, 'missing'))).toEqual([]);
  });
});
