// Per-variant progress of `build local`, and shellcheck on the image setup scripts.
import { execFileSync } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { formatElapsed, Progress, stateFromPackerLine } from '../../src/local/progress.js';
import { memoryLog, REPO_ROOT } from '../fixtures/local/mirror.js';

describe('progress', () => {
  it('formats elapsed times', () => {
    expect(formatElapsed(0)).toBe('0s');
    expect(formatElapsed(59_400)).toBe('59s');
    expect(formatElapsed(65_000)).toBe('1m05s');
    expect(formatElapsed(3_725_000)).toBe('1h02m05s');
  });

  it("reads the build phase from Packer's output", () => {
    const ts = '2026-11-22T09:40:03Z: ==> alpine.qemu.alpine: ';
    expect(stateFromPackerLine(`${ts}Starting VM, booting from CD-ROM`)).toEqual({ state: 'booting' });
    expect(stateFromPackerLine(`${ts}Waiting for SSH to become available...`)).toEqual({
      state: 'waiting for ssh',
    });
    expect(stateFromPackerLine(`${ts}Provisioning with shell script: /w/scripts/setup-tiny`)).toEqual({
      state: 'provisioning',
      detail: 'setup-tiny',
    });
    expect(stateFromPackerLine(`${ts}Gracefully halting virtual machine...`)).toEqual({
      state: 'shutting down',
    });
    expect(
      stateFromPackerLine('2026/11/22 09:41:06 packer-builder-qemu plugin: [DEBUG] handshaking'),
    ).toBeUndefined();
  });

  it('logs every state change with the elapsed time, and a summary of all variants', () => {
    let now = 1000;
    const mem = memoryLog();
    const p = new Progress(['a', 'b'], mem.log, () => now);
    p.set('a', 'iso');
    now += 65_000;
    p.set('a', 'provisioning', 'setup');
    p.set('a', 'provisioning', 'setup'); // no repeat
    p.set('b', 'booting');
    now += 5_000;
    p.set('b', 'failed', 'boom');
    expect(mem.text()).toContain('a: iso [0s]');
    expect(mem.text()).toContain('a: provisioning (setup) [1m05s]');
    expect(mem.text().match(/a: provisioning \(setup\)/g)).toHaveLength(1);
    expect(mem.text()).toContain('b: failed (boom) [5s]');
    expect(p.summary()).toBe('a: provisioning (setup) 1m10s; b: failed (boom) 5s');
    expect(p.counts()).toEqual({ provisioning: 1, failed: 1 });
    expect(p.elapsedMs('b')).toBe(5000);
  });
});

function hasShellcheck(): boolean {
  try {
    execFileSync('shellcheck', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
const shellcheck = hasShellcheck();
if (!shellcheck)
  console.warn('skipping shellcheck of scripts/: shellcheck is not installed (apt-get install shellcheck)');

describe.skipIf(!shellcheck)('setup scripts', () => {
  it('scripts/ and the test overlay scripts are shellcheck-clean', async () => {
    const scripts = ['setup', 'setup-tiny', 'setup-cloudinit', 'cleanup'].map((s) =>
      join(REPO_ROOT, 'scripts', s),
    );
    const overlay = join(REPO_ROOT, 'overlays', 'test-local', 'scripts');
    for (const f of await readdir(overlay, { withFileTypes: true })) {
      if (f.isFile()) scripts.push(join(overlay, f.name));
    }
    scripts.push(join(REPO_ROOT, 'test', 'fixtures', 'local', 'make-builder.sh'));
    const out = execFileSync('shellcheck', ['--format=gcc', ...scripts], { encoding: 'utf8' });
    expect(out).toBe('');
    expect(scripts.length).toBeGreaterThanOrEqual(7);
  });

  it('every script in scripts/ is executable and has a POSIX sh shebang', async () => {
    for (const s of ['setup', 'setup-tiny', 'setup-cloudinit', 'cleanup']) {
      const path = join(REPO_ROOT, 'scripts', s);
      const head = execFileSync('head', ['-1', path], { encoding: 'utf8' });
      expect(head).toMatch(/^#!\/bin\/sh -eu/);
      execFileSync('test', ['-x', path]);
    }
  });
});
