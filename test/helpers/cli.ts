import { execFile } from 'node:child_process';
import { join } from 'node:path';

export const ROOT = join(import.meta.dirname, '..', '..');
export const BUILD = join(ROOT, 'build');

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Run the real CLI (./build) and collect its output; never throws on a non-zero exit. */
export function runBuild(
  args: readonly string[],
  opts: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {},
): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(
      BUILD,
      [...args],
      {
        cwd: opts.cwd ?? ROOT,
        env: { ...process.env, NO_COLOR: '1', ...opts.env },
        timeout: opts.timeoutMs ?? 120_000,
        maxBuffer: 64 * 1024 * 1024,
      },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        resolve({ code, stdout: String(stdout), stderr: String(stderr) });
      },
    );
  });
}
