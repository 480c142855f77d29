import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lockWorkDir } from '../../src/util/lock.js';
import { runBuild } from '../helpers/cli.js';

describe('work directory lock', () => {
  let work: string;
  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'cib-lock-'));
  });
  afterAll(async () => {
    await rm(work, { recursive: true, force: true });
  });

  it('a second ./build on a locked work directory exits at once naming the holder', async () => {
    const holder = spawn('sleep', ['30'], { stdio: 'ignore' });
    try {
      await writeFile(
        join(work, '.lock'),
        JSON.stringify({
          pid: holder.pid,
          host: hostname(),
          started: '2026-11-22T10:00:00.000Z',
          command: 'build local',
        }),
      );
      const started = Date.now();
      const r = await runBuild(['state', '--work-dir', work]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain('work directory is locked by another build');
      expect(r.stderr).toContain(`pid ${holder.pid}`);
      expect(r.stderr).toContain('build local');
      expect(Date.now() - started).toBeLessThan(10_000);
      // the holder's lock is left alone
      expect(JSON.parse(await readFile(join(work, '.lock'), 'utf8')).pid).toBe(holder.pid);
    } finally {
      holder.kill();
      await rm(join(work, '.lock'), { force: true });
    }
  });

  it('takes over a lock whose process is gone, and releases its own', async () => {
    const dead = spawn('true');
    await new Promise((r) => dead.on('exit', r));
    await writeFile(
      join(work, '.lock'),
      JSON.stringify({
        pid: dead.pid,
        host: hostname(),
        started: '2026-11-22T10:00:00.000Z',
        command: 'build x',
      }),
    );
    const lock = await lockWorkDir(work, 'test');
    const held = JSON.parse(await readFile(join(work, '.lock'), 'utf8'));
    expect(held.pid).toBe(process.pid);
    await expect(lockWorkDir(work, 'second')).rejects.toThrow(/locked by another build: pid \d+/);
    await lock.release();
    await expect(readFile(join(work, '.lock'))).rejects.toThrow(/ENOENT/);
  });
});
