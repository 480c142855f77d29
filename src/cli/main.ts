import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { errorMessage, UserError } from '../util/errors.js';
import { createLogger } from '../util/log.js';
import { parseArgs } from './args.js';

function repoRoot(): string {
  if (process.env.CIB_ROOT) return process.env.CIB_ROOT;
  // dist/src/cli/main.js -> repository root
  return resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
}

async function main(): Promise<number> {
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs(process.argv.slice(2), process.env, repoRoot());
  } catch (err) {
    process.stderr.write(`build: error: ${errorMessage(err)}\n`);
    return err instanceof UserError ? err.exitCode : 2;
  }
  if ('helpShown' in parsed) return parsed.exitCode;
  const { options, warnings } = parsed;
  const log = createLogger({ format: options.logFormat, debug: options.debug, color: options.color });
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
    log.error({ err }, `unexpected error: ${errorMessage(err)}`);
    return 1;
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`build: fatal: ${errorMessage(err)}\n`);
    process.exitCode = 1;
  },
);
