// The human log format: no copy of the fields, warnings and errors labelled, wrapped at the terminal's width,
// and the live status area kept below the log lines.
import { describe, expect, it } from 'vitest';
import { Progress } from '../../src/local/progress.js';
import { formatHuman, HumanLog, wrapText } from '../../src/util/human-log.js';
import { memoryLog } from '../fixtures/local/mirror.js';

const line = (o: object) => JSON.stringify({ time: Date.UTC(2026, 0, 2, 3, 4, 5), ...o });

describe('human log lines', () => {
  it('shows the time and the message only (the fields stay in --log-format json)', () => {
    expect(
      formatHuman(line({ level: 30, msg: 'verified x.iso', sha512: 'ab'.repeat(64) }), { color: false }),
    ).toBe('03:04:05 verified x.iso');
    expect(formatHuman(line({ level: 40, msg: 'careful' }), { color: false })).toBe(
      '03:04:05 warning: careful',
    );
    expect(formatHuman(line({ level: 50, msg: 'broken' }), { color: true })).toBe(
      '\x1b[31m03:04:05 error: broken\x1b[0m',
    );
  });

  it('wraps long messages to the width with an indent', () => {
    const text = formatHuman(line({ level: 30, msg: 'word '.repeat(40).trim() }), {
      color: false,
      width: 80,
    });
    const lines = text.split('\n');
    expect(lines.length).toBeGreaterThan(2);
    for (const l of lines) expect(l.length).toBeLessThanOrEqual(80);
    expect(lines[1]).toMatch(/^ {9}word/);
    expect(wrapText('a b c', 3, 1)).toEqual(['a b', ' c']);
  });

  it('keeps a live status block at the bottom of a terminal, and none elsewhere', () => {
    let out = '';
    const h = new HumanLog({ color: false, width: 80, write: (s) => (out += s) });
    h.setStatus(['  one  booting', '  two  queued']);
    h.write(line({ level: 30, msg: 'hello' }));
    // the block is cleared (cursor up 2 lines, clear to the end), the line printed, the block drawn again
    expect(out).toBe(
      '  one  booting\n  two  queued\n\x1b[2F\x1b[J03:04:05 hello\n  one  booting\n  two  queued\n',
    );
    let plain = '';
    const p = new HumanLog({ color: false, write: (s) => (plain += s) });
    p.setStatus(['x']);
    p.write(line({ level: 30, msg: 'hello' }));
    expect(plain).toBe('03:04:05 hello\n');
    expect(p.live).toBe(false);
  });

  it('progress: on a terminal the state changes go to the status block, the outcome to the log', () => {
    let out = '';
    const h = new HumanLog({ color: false, width: 80, write: (s) => (out += s) });
    const mem = memoryLog('info');
    let t = 0;
    const pr = new Progress(['a-variant', 'b'], mem.log, () => t, h);
    pr.set('a-variant', 'booting');
    t = 65_000;
    pr.set('a-variant', 'done');
    expect(mem.text()).toBe('a-variant: done [1m05s]');
    expect(out).toContain('  a-variant  booting');
    expect(pr.statusLines()[0]).toMatch(/^ {2}a-variant {2}done +1m05s$/);
    pr.stop();
  });
});
