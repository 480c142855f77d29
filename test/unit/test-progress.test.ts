// The live per-image status of `build test` on a terminal (the same status block as `build local`), and plain
// lines only elsewhere: the step's own log lines are the record, the block never writes to the log.
import { describe, expect, it } from 'vitest';
import type { BootTestPhase } from '../../src/boottest/run.js';
import { Progress, type TestState } from '../../src/local/progress.js';
import { HumanLog } from '../../src/util/human-log.js';
import { memoryLog } from '../fixtures/local/mirror.js';

describe('build test: live status', () => {
  it('on a terminal: each phase redraws the block, the clock stops at passed/failed, nothing is logged', () => {
    let out = '';
    const h = new HumanLog({ color: false, width: 80, write: (s) => (out += s) });
    const mem = memoryLog('debug');
    let t = 0;
    const pr = new Progress<TestState>(
      ['alpine-3.24-x86_64-bios', 'alpine-3.24-aarch64'],
      mem.log,
      () => t,
      h,
      true,
    );
    expect(pr.isLive).toBe(true);
    const phases: BootTestPhase[] = ['preparing', 'booting', 'waiting for ssh', 'checking', 'powering off'];
    for (const p of phases) {
      pr.set('alpine-3.24-x86_64-bios', p, p === 'booting' ? 'TCG' : undefined);
      t += 10_000;
      expect(out).toContain(`alpine-3.24-x86_64-bios  ${p}${p === 'booting' ? ' (TCG)' : ''}`);
    }
    pr.set('alpine-3.24-x86_64-bios', 'passed');
    pr.set('alpine-3.24-aarch64', 'booting');
    t += 65_000;
    expect(pr.statusLines()).toEqual([
      `  alpine-3.24-x86_64-bios  ${'passed'.padEnd(28)} 50s`,
      `  alpine-3.24-aarch64      ${'booting'.padEnd(28)} 1m05s`,
    ]);
    pr.stop();
    expect(mem.text()).toBe('');
  });

  it('off a terminal: no status block and no extra lines (the step logs booting/passed/failed itself)', () => {
    let out = '';
    const h = new HumanLog({ color: false, write: (s) => (out += s) });
    const mem = memoryLog('debug');
    const pr = new Progress<TestState>(['a'], mem.log, Date.now, h.live ? h : undefined, true);
    expect(pr.isLive).toBe(false);
    pr.startTicker(0);
    pr.set('a', 'booting');
    pr.set('a', 'failed');
    pr.stop();
    expect(out).toBe('');
    expect(mem.text()).toBe('');
  });
});
