import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

/** Compile once before the suites run, so integration tests do not race to compile. */
export default function setup(): void {
  const root = join(import.meta.dirname, '..', '..');
  execFileSync(join(root, 'build'), ['--help'], { stdio: ['ignore', 'ignore', 'inherit'] });
}
