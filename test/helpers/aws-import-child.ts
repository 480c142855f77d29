/**
 * Runs one AWS import in a process of its own, so a test can kill it at any moment (a real crash, no cleanup).
 * Input: AWS_CHILD_INPUT = JSON { config, workDir, env }. Output: the ImportResult as JSON on stdout.
 *   node --import tsx test/helpers/aws-import-child.ts
 */
import { getCloud } from '../../src/clouds/index.js';
import type { ImageConfig } from '../../src/config/types.js';
import { Image } from '../../src/state/image.js';
import { emptyState } from '../../src/state/image-state.js';
import { createLogger } from '../../src/util/log.js';

const input = JSON.parse(process.env.AWS_CHILD_INPUT ?? '{}') as {
  config: ImageConfig;
  revision?: number;
  workDir: string;
  env: Record<string, string>;
};
const log = createLogger({ format: 'json', debug: false, color: false });
const result = await getCloud('aws').importImage!(
  new Image(input.config, input.workDir, emptyState(input.revision ?? 0)),
  {
    log,
    useBroker: false,
    env: input.env,
    workDir: input.workDir,
  },
);
process.stdout.write(`${JSON.stringify(result)}\n`);
