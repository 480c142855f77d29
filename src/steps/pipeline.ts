import type { Logger } from 'pino';
import type { BuildOptions } from '../cli/options.js';

/** Run the state machine up to options.command. Returns the process exit code. */
export async function run(options: BuildOptions, log: Logger): Promise<number> {
  log.info({ command: options.command }, 'not implemented yet');
  return 0;
}
