import { mkdir } from 'node:fs/promises';
import type { Logger } from 'pino';
import type { BuildOptions } from '../cli/options.js';
import { getCloud } from '../clouds/index.js';
import type { CloudContext, CloudPlugin } from '../clouds/types.js';
import { selectVariants } from '../config/index.js';
import type { StoragePool } from '../storage/types.js';
import { lockWorkDir } from '../util/lock.js';
import { redactText } from '../util/redact.js';
import { cloudCheck, configsStep } from './configs.js';
import type { LocalBuild, RunContext } from './context.js';

/**
 * The effects of a run, each replaceable so the whole pipeline runs in-process in a test (see
 * test/integration/pipeline-inprocess.test.ts): nothing below reads process.env or the cloud registry itself.
 */
export interface RunDeps {
  /** where reports (plan table, summaries) go; stdout by default */
  readonly out?: (text: string) => void;
  readonly now?: () => Date;
  /** the environment (process.env by default) */
  readonly env?: NodeJS.ProcessEnv;
  /** the storage pool (one made from `env` by default); a pool given here is not closed by the run */
  readonly pool?: StoragePool;
  /** the cloud plugins by name (the registry in clouds/index.ts by default) */
  readonly clouds?: (name: string) => CloudPlugin;
  /** the local step's build (the chroot or VM builder by default) */
  readonly build?: LocalBuild;
}

/** Run the state machine up to options.command. Returns the process exit code. */
export async function run(options: BuildOptions, log: Logger, deps: RunDeps = {}): Promise<number> {
  const out = deps.out ?? ((t: string) => process.stdout.write(`${t}\n`));
  const now = deps.now ?? (() => new Date());
  await mkdir(options.workDir, { recursive: true });
  const lock = await lockWorkDir(
    options.workDir,
    redactText(`build ${process.argv.slice(2).join(' ')}`),
    (m) => log.warn(m),
  );
  try {
    const env = deps.env ?? process.env;
    const clouds = deps.clouds ?? getCloud;
    const images = await configsStep(options, log, now(), cloudCheck(clouds));
    // --only/--skip keys that match no variant are refused by every step, configs included
    selectVariants(images, options.only, options.skip);
    if (options.command === 'configs') return 0;

    // everything after configs is loaded only now (start-up of `./build configs`)
    const [{ createStoragePool }, { runCommand }] = await Promise.all([
      import('../storage/index.js'),
      import('./run-command.js'),
    ]);
    const pool = deps.pool ?? createStoragePool({ log, env });
    const cloudContext: CloudContext = {
      log,
      useBroker: options.useBroker,
      env,
      workDir: options.workDir,
      // SDK clients and broker credentials shared by every image of this run
      cache: new Map(),
    };
    const ctx: RunContext = {
      options,
      log,
      pool,
      cloud: clouds,
      cloudContext,
      now,
      env,
      ...(deps.build ? { build: deps.build } : {}),
    };
    try {
      return await runCommand(images, ctx, out);
    } finally {
      log.debug({ sshConnections: pool.stats().sshConnections }, 'storage connections');
      if (!deps.pool) await pool.close();
    }
  } finally {
    await lock.release();
  }
}
