import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { errorMessage, UserError } from '../util/errors.js';
import { createLogger } from '../util/log.js';
import { redactText } from '../util/redact.js';
import { parseArgs } from './args.js';

function repoRoot(): string {
  if (process.env.CIB_ROOT) return process.env.CIB_ROOT;
  // run without ./build: the bundle (dist/cli/main.js) or tsc's output (dist/src/cli/main.js) sits under the
  // repository root, the first directory up that holds package.json
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json')) && dirname(dir) !== dir) dir = dirname(dir);
  return dir;
}

const OS_ERRORS: Record<string, string> = {
  ENOENT: 'does not exist',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  ENOTDIR: 'a part of the path is not a directory',
  EISDIR: 'is a directory, expected a file',
  EROFS: 'read-only file system',
  ENOSPC: 'no space left on the device',
  EDQUOT: 'disk quota exceeded',
  EEXIST: 'already exists',
  ENAMETOOLONG: 'file name too long',
  ELOOP: 'too many levels of symbolic links',
  EMFILE: 'too many open files',
  EIO: 'input/output error',
};

/** One line for an operating-system error on a file (it names the path), else undefined. */
function osErrorLine(err: unknown): string | undefined {
  const e = err as NodeJS.ErrnoException | undefined;
  if (!e || typeof e.code !== 'string' || typeof e.path !== 'string') return undefined;
  const what = OS_ERRORS[e.code] ?? e.code;
  const d = (err as { dest?: unknown }).dest;
  const dest = typeof d === 'string' ? ` -> ${d}` : '';
  return `${e.path}${dest}: ${what} (${e.syscall ?? 'file operation'} failed: ${e.code})`;
}

async function main(): Promise<number> {
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs(process.argv.slice(2), process.env, repoRoot());
  } catch (err) {
    process.stderr.write(`build: error: ${redactText(errorMessage(err))}\n`);
    return err instanceof UserError ? err.exitCode : 2;
  }
  if ('helpShown' in parsed) return parsed.exitCode;
  const { options, warnings } = parsed;
  const log = createLogger({
    format: options.logFormat,
    debug: options.debug,
    color: options.color,
    ...(process.stderr.isTTY ? { width: process.stderr.columns || 80 } : {}),
  });
  for (const w of warnings) log.warn(w);
  try {
    // loaded only now: --help and usage errors stay instant
    const { run } = await import('../steps/pipeline.js');
    return await run(options, log);
  } catch (err) {
    if (err instanceof UserError) {
      log.error(err.message);
      return err.exitCode;
    }
    const os = osErrorLine(err);
    if (os) {
      // a path the user gave (work dir, output, overlay, vars) that the system refused: not a bug, no stack
      log.error(os);
      return 1;
    }
    log.error({ err }, `unexpected error: ${errorMessage(err)}`);
    return 1;
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`build: fatal: ${redactText(errorMessage(err))}\n`);
    process.exitCode = 1;
  },
);
