import { statSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { Command, CommanderError, Option } from 'commander';
import {
  EXTRA_COMMANDS,
  type ExtraCommand,
  OPTIONAL_STEPS,
  type OptionalStep,
  STEP_HELP,
  STEPS,
  type Step,
} from '../steps/steps.js';
import { UsageError } from '../util/errors.js';
import { type BuildOptions, DEFAULT_CDN_URL, DEFAULT_RELEASES_URL } from './options.js';
import { type ScaleOutFlags, scaleOutOptions } from './scale-out-args.js';

export interface ParsedArgs {
  options: BuildOptions;
  /** warnings to log once a logger exists */
  warnings: string[];
}

/** What parseArgs returns when it printed help or a version instead of parsing a command. */
export interface HelpShown {
  helpShown: true;
  exitCode: number;
}

const ARCHES = ['aarch64', 'x86_64'];

function stepsHelp(): string {
  const names = [...STEPS, ...EXTRA_COMMANDS];
  const width = Math.max(...names.map((n) => n.length));
  const lines = names.map((n) => `  ${n.padEnd(width)}  ${STEP_HELP[n]}`);
  return [
    '',
    'Steps (build up to and including STEP; earlier steps run as needed):',
    ...lines,
    '',
    '(*) may not apply to or be implemented for all cloud providers',
    '',
    'Environment:',
    '  ALPINE_RELEASES_URL        default for --releases-url',
    '  ALPINE_CDN_URL             default for --cdn-url',
    '  BUILD_WORK_DIR             default for --work-dir',
    '  AWS_* / AWS_ENDPOINT_URL*  AWS credentials and endpoint overrides (import, publish, s3:// storage)',
    '  IDENTITY_BROKER_ENDPOINT, IDENTITY_BROKER_API_KEY   identity broker (--use-broker)',
    '',
    'Examples:',
    '  ./build configs --releases-url file://$PWD/test/fixtures/releases.json',
    '  ./build local --only aarch64 --parallel 2',
    '  ./build publish --use-broker',
    '  ./build configs --custom overlays/testing',
    '  ./build matrix --ci github --shards 8      (then each job: ./build publish --shard I/8)',
  ].join('\n');
}

function makeProgram(env: NodeJS.ProcessEnv): Command {
  const program = new Command('build');
  program
    .description('Build, upload, import, sign, publish and release cloud images.')
    .argument('<step>', `one of: ${[...STEPS, ...EXTRA_COMMANDS].join(', ')}`)
    .option('--debug', 'enable debug output', false)
    .option('--clean', 'start with a clean work environment (caches are kept)', false)
    .option('--pad-uefi-bin-arch <arch...>', "pad out UEFI firmware to 64 MiB (e.g. 'aarch64')")
    .option('--custom <dir...>', 'overlay custom directory in work environment (in the order given)')
    .option('--skip <key...>', 'skip variants with any of these dimension key(s)')
    .option('--only <key...>', 'only variants with all of these dimension key(s)')
    .option('--revise', 'bump revision and rebuild if published or released', false)
    .option('--use-broker', 'use the identity broker to get credentials', false)
    .option('--color', 'colour Packer and log output (default: when stderr is a terminal)')
    .option('--no-color', 'turn off Packer and log colour output')
    .option('--parallel <n>', 'process N images in parallel', '1')
    .option('--vars <file...>', 'supply Packer with -var-file(s)')
    .option('--disable <step...>', `disable optional steps (${OPTIONAL_STEPS.join(', ')})`)
    .option(
      '--releases-url <url>',
      `Alpine releases.json, https:// or file:// (env ALPINE_RELEASES_URL; default ${DEFAULT_RELEASES_URL})`,
      env.ALPINE_RELEASES_URL || DEFAULT_RELEASES_URL,
    )
    .option(
      '--cdn-url <url>',
      `Alpine mirror base URL, https:// or file:// (env ALPINE_CDN_URL; default ${DEFAULT_CDN_URL})`,
      env.ALPINE_CDN_URL || DEFAULT_CDN_URL,
    )
    .addOption(
      new Option('--log-format <format>', 'log format').choices(['pretty', 'json']).default('pretty'),
    )
    .option(
      '--work-dir <dir>',
      'work directory (env BUILD_WORK_DIR; default <repo>/work)',
      env.BUILD_WORK_DIR,
    )
    .option('--output <dir>', 'catalog: output directory (default: work/catalog or catalog_dir)')
    .option('--really', 'prune: really remove what the policy selects (default: list only)', false)
    .option('--shard <i/n>', 'work as worker I of N over the shared storage, with leases (docs/scale-out.md)')
    .option('--run-id <id>', 'sharded: id of the CI run the workers belong to (default: from the CI)')
    .option('--lease-ttl <seconds>', 'sharded: lease time-to-live (default 300)')
    .option('--ci <system>', 'matrix: github or gitlab')
    .option('--shards <n>', 'matrix: number of jobs (default: one per image, at most 256)')
    .option('--job-step <step>', 'matrix: the step each job runs with --shard (default publish)')
    .addHelpText('after', stepsHelp())
    .showSuggestionAfterError(true)
    .allowExcessArguments(false);
  return program;
}

function checkDir(flag: string, dir: string, rootDir: string): string {
  const abs = isAbsolute(dir) ? dir : resolve(process.cwd(), dir);
  let ok = false;
  try {
    ok = statSync(abs).isDirectory();
  } catch {
    ok = false;
  }
  if (!ok) {
    // also accept paths relative to the repository root (e.g. overlays/testing)
    const fromRoot = join(rootDir, dir);
    try {
      if (!isAbsolute(dir) && statSync(fromRoot).isDirectory()) return fromRoot;
    } catch {
      // fall through
    }
    throw new UsageError(`${flag} ${dir}: directory does not exist`);
  }
  return abs;
}

function checkFile(flag: string, file: string): string {
  const abs = isAbsolute(file) ? file : resolve(process.cwd(), file);
  let ok = false;
  try {
    ok = statSync(abs).isFile();
  } catch {
    ok = false;
  }
  if (!ok) throw new UsageError(`${flag} ${file}: file does not exist`);
  return abs;
}

function checkUrl(flag: string, url: string): string {
  if (!/^(https?|file):\/\//.test(url)) {
    throw new UsageError(`${flag} ${url}: expected an http://, https:// or file:// URL`);
  }
  return url.replace(/\/+$/, '');
}

/**
 * Parse and check the command line. Throws UsageError (exit code 2) with one clear line for bad input.
 * Help and version output is written by commander; then `{ helpShown: true }` is returned.
 */
export function parseArgs(
  argv: readonly string[],
  env: NodeJS.ProcessEnv,
  rootDir: string,
  io: { out: (s: string) => void; err: (s: string) => void } = {
    out: (s) => process.stdout.write(s),
    err: (s) => process.stderr.write(s),
  },
): ParsedArgs | HelpShown {
  const program = makeProgram(env);
  program.exitOverride();
  program.configureOutput({
    writeOut: io.out,
    // commander's own error lines are rethrown below as one UsageError line
    writeErr: () => {},
    outputError: () => {},
  });
  try {
    program.parse([...argv], { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version') {
        return { helpShown: true, exitCode: 0 };
      }
      if (err.code === 'commander.help') return { helpShown: true, exitCode: 0 };
      throw new UsageError(err.message.replace(/^error: /, ''));
    }
    throw err;
  }
  const step = program.args[0] ?? '';
  const allCommands: readonly string[] = [...STEPS, ...EXTRA_COMMANDS];
  if (!allCommands.includes(step)) {
    throw new UsageError(`unknown step '${step}': expected one of ${allCommands.join(', ')}`);
  }
  const o = program.opts<
    {
      debug: boolean;
      clean: boolean;
      padUefiBinArch?: string[];
      custom?: string[];
      skip?: string[];
      only?: string[];
      revise: boolean;
      useBroker: boolean;
      color?: boolean;
      parallel: string;
      vars?: string[];
      disable?: string[];
      releasesUrl: string;
      cdnUrl: string;
      logFormat: 'pretty' | 'json';
      workDir?: string;
      output?: string;
      really: boolean;
    } & ScaleOutFlags
  >();
  const warnings: string[] = [];

  if (!/^\d+$/.test(o.parallel) || Number(o.parallel) < 1) {
    throw new UsageError(`--parallel ${o.parallel}: expected a positive whole number`);
  }
  if (step === 'rollback' && o.revise) {
    throw new UsageError('--revise cannot be used with the rollback step');
  }
  if (o.really && step !== 'prune') throw new UsageError('--really is only valid with the prune command');
  if (o.output !== undefined && step !== 'catalog' && step !== 'release' && step !== 'matrix') {
    throw new UsageError('--output is only valid with the catalog, release and matrix commands');
  }
  const scaleOut = scaleOutOptions(step, o, env);
  if (scaleOut?.shard && o.revise) throw new UsageError('--revise cannot be used with --shard');
  for (const arch of o.padUefiBinArch ?? []) {
    if (!ARCHES.includes(arch)) {
      throw new UsageError(`--pad-uefi-bin-arch ${arch}: expected one of ${ARCHES.join(', ')}`);
    }
  }
  const disable = new Set<OptionalStep>();
  for (const d of o.disable ?? []) {
    if (!(OPTIONAL_STEPS as readonly string[]).includes(d)) {
      throw new UsageError(`--disable ${d}: expected one of ${OPTIONAL_STEPS.join(', ')}`);
    }
    disable.add(d as OptionalStep);
  }
  if (disable.has('import') && !disable.has('publish')) {
    disable.add('publish');
    warnings.push('--disable import also disables publish');
  }
  const custom = (o.custom ?? []).map((d) => checkDir('--custom', d, rootDir));
  const vars = (o.vars ?? []).map((f) => checkFile('--vars', f));
  const workDir = o.workDir ? resolve(process.cwd(), o.workDir) : join(rootDir, 'work');
  const color = o.color ?? Boolean(process.stderr.isTTY && !env.NO_COLOR);

  const options: BuildOptions = Object.freeze({
    command: step as Step | ExtraCommand,
    debug: o.debug,
    clean: o.clean,
    padUefiBinArch: Object.freeze([...(o.padUefiBinArch ?? [])]),
    custom: Object.freeze(custom),
    skip: Object.freeze([...(o.skip ?? [])]),
    only: Object.freeze([...(o.only ?? [])]),
    revise: o.revise,
    useBroker: o.useBroker,
    color,
    parallel: Number(o.parallel),
    vars: Object.freeze(vars),
    disable: Object.freeze([...disable]),
    releasesUrl: checkUrl('--releases-url', o.releasesUrl),
    cdnUrl: checkUrl('--cdn-url', o.cdnUrl),
    logFormat: o.logFormat,
    rootDir,
    workDir,
    ...(o.output !== undefined ? { output: resolve(process.cwd(), o.output) } : {}),
    really: o.really,
    ...(scaleOut ? { scaleOut } : {}),
  });
  return { options, warnings };
}
