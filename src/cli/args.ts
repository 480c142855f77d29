import { execFileSync } from 'node:child_process';
import { accessSync, constants, readFileSync, statSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import {
  EXTRA_COMMANDS,
  type ExtraCommand,
  OPTIONAL_STEPS,
  type OptionalStep,
  STEP_HELP,
  STEPS,
  type Step,
} from '../steps/steps.js';
import { errorMessage, UsageError } from '../util/errors.js';
import { redactUrl } from '../util/redact.js';
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
    'Environment (besides the option defaults marked "env:" above):',
    '  BUILD_TEST_TIMEOUT         test: seconds from QEMU start until SSH must answer (default 300, 480 aarch64)',
    '  AWS_* / AWS_ENDPOINT_URL*  AWS credentials and endpoint overrides (import, publish, s3:// storage)',
    '  IDENTITY_BROKER_ENDPOINT, IDENTITY_BROKER_API_KEY   identity broker (--use-broker)',
    '  NO_COLOR, FORCE_COLOR      colour off / on (FORCE_COLOR=0: off) when neither --color nor --no-color',
    '  COLUMNS                    width of the tables on a terminal',
    '',
    EXIT_CODES,
    '',
    'Per-step help: ./build STEP --help',
    '',
    'Examples:',
    '  ./build configs --releases-url file://$PWD/test/fixtures/releases.json',
    '  ./build local --only aarch64 --parallel 2',
    '  ./build publish --use-broker',
    '  ./build configs --custom overlays/testing',
    '  ./build matrix --ci github --shards 8      (then each job: ./build publish --shard I/8)',
  ].join('\n');
}

const EXIT_CODES = [
  'Exit codes:',
  '  0  done, or nothing to do',
  '  1  a step failed for at least one image (see the summary), or bad configs, storage or credentials',
  '  2  usage error: unknown step or option, bad option value',
].join('\n');

/** Which options matter to which step (per-step --help). The common ones apply to every step. */
const COMMON = [
  '--debug',
  '--custom',
  '--skip',
  '--only',
  '--log-format',
  '--work-dir',
  '--releases-url',
  '--clean',
  '--color',
  '--no-color',
  '--json',
  '--help',
];
const STEP_OPTIONS: Record<string, string[]> = {
  configs: [],
  state: ['--revise', '--disable', '--parallel', '--cdn-url'],
  rollback: ['--parallel', '--use-broker'],
  local: ['--revise', '--parallel', '--vars', '--pad-uefi-bin-arch', '--cdn-url'],
  test: ['--revise', '--parallel', '--vars', '--pad-uefi-bin-arch', '--cdn-url', '--disable'],
  upload: ['--revise', '--parallel', '--vars', '--pad-uefi-bin-arch', '--cdn-url'],
  import: ['--revise', '--parallel', '--vars', '--disable', '--use-broker', '--cdn-url'],
  sign: ['--revise', '--parallel', '--vars', '--disable', '--use-broker', '--cdn-url'],
  publish: ['--revise', '--parallel', '--vars', '--disable', '--use-broker', '--cdn-url'],
  release: ['--revise', '--parallel', '--vars', '--disable', '--use-broker', '--output', '--cdn-url'],
  catalog: ['--output'],
  prune: ['--really', '--storage-only', '--use-broker'],
};

/** A whole number from 1 to max (commander calls this with the raw value; the error becomes a usage error). */
function positiveInt(flag: string, max: number): (v: string) => number {
  return (v) => {
    if (!/^\d+$/.test(v) || Number(v) < 1) {
      throw new InvalidArgumentError(`${flag} ${v}: expected a positive whole number`);
    }
    if (Number(v) > max)
      throw new InvalidArgumentError(`${flag} ${v}: expected a whole number from 1 to ${max}`);
    return Number(v);
  };
}

/** "cloud-image-builder 0.1.0 (commit abc1234)": the package version and the checkout's commit. */
export function versionText(rootDir: string): string {
  let version = 'unknown';
  try {
    version =
      (JSON.parse(readFileSync(join(rootDir, 'package.json'), 'utf8')) as { version?: string }).version ??
      version;
  } catch {
    // not in a checkout
  }
  let commit = process.env.CIB_COMMIT ?? '';
  if (!commit) {
    try {
      commit = execFileSync('git', ['-C', rootDir, 'rev-parse', '--short=12', 'HEAD'], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'ignore'],
        timeout: 5000,
      }).trim();
      const dirty = execFileSync('git', ['-C', rootDir, 'status', '--porcelain', '--untracked-files=no'], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'ignore'],
        timeout: 5000,
      }).trim();
      if (dirty) commit += '-dirty';
    } catch {
      commit = 'unknown';
    }
  }
  return `cloud-image-builder ${version} (commit ${commit}, node ${process.versions.node})\n`;
}

/** Help for one step: what it does, what runs before it, and only the options that matter to it. */
function stepHelpText(program: Command, step: string): string {
  const help = program.createHelp();
  const wanted = new Set([...COMMON, ...(STEP_OPTIONS[step] ?? [])]);
  const opts = program.options.filter((o) => wanted.has(o.long ?? ''));
  const width = Math.max(...opts.map((o) => help.optionTerm(o).length));
  const chain = (STEPS as readonly string[]).includes(step)
    ? `Runs every step up to ${step} that an image still needs: ${STEPS.slice(0, STEPS.indexOf(step as Step) + 1).join(' → ')}.`
    : 'Runs on its own (not part of the step chain).';
  return [
    `Usage: build ${step} [options]`,
    '',
    `${STEP_HELP[step as Step | ExtraCommand]}`,
    chain,
    '',
    'Options:',
    ...opts.map((o) => `  ${help.optionTerm(o).padEnd(width)}  ${help.optionDescription(o)}`),
    '',
    EXIT_CODES,
    '',
  ].join('\n');
}

function makeProgram(): Command {
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
    .option(
      '--publish-unchanged',
      'upload, import and publish a build even when its content equals the latest released revision',
      false,
    )
    .option('--use-broker', 'use the identity broker to get credentials', false)
    .option('--color', 'colour Packer and log output (default: when stderr is a terminal)')
    .option('--no-color', 'turn off Packer and log colour output')
    .addOption(
      new Option('--parallel <n>', 'process N images in parallel')
        .argParser(positiveInt('--parallel', MAX_PARALLEL))
        .default(1),
    )
    .option('--vars <file...>', 'supply Packer with -var-file(s)')
    .option('--disable <step...>', `disable optional steps (${OPTIONAL_STEPS.join(', ')})`)
    .addOption(
      new Option('--releases-url <url>', 'Alpine releases.json, https:// or file://')
        .env('ALPINE_RELEASES_URL')
        .default(DEFAULT_RELEASES_URL),
    )
    .addOption(
      new Option('--cdn-url <url>', 'Alpine mirror base URL, https:// or file://')
        .env('ALPINE_CDN_URL')
        .default(DEFAULT_CDN_URL),
    )
    .addOption(
      new Option('--log-format <format>', 'log format').choices(['pretty', 'json']).default('pretty'),
    )
    .addOption(
      new Option('--work-dir <dir>', 'work directory')
        .env('BUILD_WORK_DIR')
        .default(undefined, '<repo>/work'),
    )
    .option('--output <dir>', 'catalog: output directory (default: work/catalog or catalog_dir)')
    .option('--really', 'prune: really remove what the policy selects (default: list only)')
    .option('--storage-only', 'prune: only storage, no cloud is listed (needs no cloud credentials)')
    .option('--json', 'state, prune, failures: print JSON on stdout instead of tables')
    .option('--shard <i/n>', 'work as worker I of N over the shared storage, with leases (docs/scale-out.md)')
    .option('--run-id <id>', 'sharded: id of the CI run the workers belong to (default: from the CI)')
    .option('--lease-ttl <seconds>', 'sharded: lease time-to-live (default 300)')
    .option('--ci <system>', 'matrix: github or gitlab')
    .option('--shards <n>', 'matrix: number of jobs (default: one per image, at most 256)')
    .option('--job-step <step>', 'matrix: the step each job runs with --shard (default publish)')
    .option('-V, --version', 'print the version and the commit it was built from')
    .addHelpText('after', stepsHelp())
    .showSuggestionAfterError(true)
    .allowExcessArguments(false);
  return program;
}

/** Colour when neither --color nor --no-color is given: FORCE_COLOR (0 = off), then NO_COLOR, then a terminal. */
export function colorFromEnv(env: NodeJS.ProcessEnv, isTty: boolean): boolean {
  const force = env.FORCE_COLOR;
  if (force !== undefined) return force !== '0' && force !== 'false';
  if (env.NO_COLOR) return false;
  return isTty;
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
  const shown = redactUrl(url);
  const expected = 'expected an http://, https:// or file:// URL';
  if (!/^(https?|file):\/\//.test(url)) throw new UsageError(`${flag} ${shown}: ${expected}`);
  if (/\s/.test(url))
    throw new UsageError(`${flag} ${shown}: ${expected} without spaces (encode them as %20)`);
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new UsageError(`${flag} ${shown}: ${expected}; this one is not a valid URL`);
  }
  // (the URL parser would take "releases.json" in https:///releases.json for the host)
  if (parsed.protocol !== 'file:' && (!parsed.hostname || /^https?:\/\/[/\\]/i.test(url))) {
    throw new UsageError(`${flag} ${shown}: ${expected} with a host name (https://host/path)`);
  }
  if (parsed.protocol === 'file:' && (parsed.pathname === '' || parsed.pathname === '/')) {
    throw new UsageError(`${flag} ${shown}: a file:// URL needs an absolute path (file:///abs/path)`);
  }
  return url.replace(/\/+$/, '');
}

/** The most images worked on at once that makes sense on one machine. */
const MAX_PARALLEL = 256;

/**
 * Options that take a value: a value that looks like a flag means the value was left out and the next flag was
 * taken for it (`--work-dir --debug`).
 */
const VALUE_OPTIONS = [
  'padUefiBinArch',
  'custom',
  'skip',
  'only',
  'parallel',
  'vars',
  'disable',
  'releasesUrl',
  'cdnUrl',
  'workDir',
  'output',
  'shard',
  'runId',
  'leaseTtl',
  'ci',
  'shards',
  'jobStep',
] as const;

function flagName(key: string): string {
  return `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
}

function checkNoSwallowedFlags(opts: object): void {
  const o = opts as Record<string, unknown>;
  for (const key of VALUE_OPTIONS) {
    const v = o[key];
    for (const value of Array.isArray(v) ? v : [v]) {
      if (typeof value === 'string' && /^--?[A-Za-z]/.test(value)) {
        throw new UsageError(
          `${flagName(key)}: expected a value, got the flag "${value}" (was the value left out?)`,
        );
      }
    }
  }
}

/**
 * The work directory must be a directory we can write, or not exist yet under a directory we can write.
 * `source` names where it came from (the flag or BUILD_WORK_DIR).
 */
function checkWritableDir(source: string, dir: string): void {
  let probe = dir;
  for (;;) {
    let st: ReturnType<typeof statSync> | undefined;
    try {
      st = statSync(probe);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENOTDIR') {
        throw new UsageError(`${source} ${dir}: cannot use it (${code ?? errorMessage(err)})`);
      }
    }
    if (st) {
      if (!st.isDirectory()) {
        throw new UsageError(
          probe === dir
            ? `${source} ${dir}: expected a directory, but it is a file`
            : `${source} ${dir}: expected a directory, but ${probe} is a file`,
        );
      }
      try {
        accessSync(probe, constants.W_OK | constants.X_OK);
      } catch {
        throw new UsageError(
          probe === dir
            ? `${source} ${dir}: expected a writable directory, but it is not writable`
            : `${source} ${dir}: expected a directory that can be created, but ${probe} is not writable`,
        );
      }
      return;
    }
    const parent = dirname(probe);
    if (parent === probe) return;
    probe = parent;
  }
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
  const program = makeProgram();
  const allSteps: readonly string[] = [...STEPS, ...EXTRA_COMMANDS];
  if (argv.includes('--version') || argv.includes('-V')) {
    io.out(versionText(rootDir));
    return { helpShown: true, exitCode: 0 };
  }
  const helpStep = argv.find((a) => allSteps.includes(a));
  if (helpStep && (argv.includes('--help') || argv.includes('-h'))) {
    io.out(stepHelpText(program, helpStep));
    return { helpShown: true, exitCode: 0 };
  }
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
      // an argParser's own message names the flag and what was expected
      const own = /^error: option '[^']*' argument '[^']*' is invalid\. (.*)$/.exec(err.message);
      throw new UsageError(own?.[1]?.startsWith('--') ? own[1] : err.message.replace(/^error: /, ''));
    }
    throw err;
  }
  const step = program.args[0] ?? '';
  if (!allSteps.includes(step)) {
    throw new UsageError(`unknown step '${step}': expected one of ${allSteps.join(', ')}`);
  }
  // defaults from the environment passed in (commander's Option.env() reads process.env; the same in a real run)
  for (const [name, v] of [
    ['releasesUrl', 'ALPINE_RELEASES_URL'],
    ['cdnUrl', 'ALPINE_CDN_URL'],
    ['workDir', 'BUILD_WORK_DIR'],
  ] as const) {
    const source = program.getOptionValueSource(name);
    if ((source === 'default' || source === undefined) && env[v]) program.setOptionValue(name, env[v]);
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
      parallel: number;
      vars?: string[];
      disable?: string[];
      releasesUrl: string;
      cdnUrl: string;
      logFormat: 'pretty' | 'json';
      workDir?: string;
      output?: string;
      really?: boolean;
      storageOnly?: boolean;
      json?: boolean;
      publishUnchanged: boolean;
    } & ScaleOutFlags
  >();
  const warnings: string[] = [];
  checkNoSwallowedFlags(o);

  if (step === 'rollback' && o.revise) {
    throw new UsageError('--revise cannot be used with the rollback step');
  }
  if (o.really && step !== 'prune') throw new UsageError('--really is only valid with the prune command');
  // --only/--skip narrow prune and catalog as they narrow every other step
  if (o.storageOnly && step !== 'prune') {
    throw new UsageError('--storage-only is only valid with the prune command');
  }
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
  checkWritableDir(
    o.workDir === undefined
      ? '--work-dir (default)'
      : o.workDir === env.BUILD_WORK_DIR &&
          !argv.includes('--work-dir') &&
          !argv.some((a) => a.startsWith('--work-dir='))
        ? 'BUILD_WORK_DIR'
        : '--work-dir',
    workDir,
  );
  if (o.output !== undefined) checkWritableDir('--output', resolve(process.cwd(), o.output));
  const color = o.color ?? colorFromEnv(env, Boolean(process.stderr.isTTY));

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
    parallel: o.parallel,
    vars: Object.freeze(vars),
    disable: Object.freeze([...disable]),
    releasesUrl: checkUrl('--releases-url', o.releasesUrl),
    cdnUrl: checkUrl('--cdn-url', o.cdnUrl),
    logFormat: o.logFormat,
    rootDir,
    workDir,
    ...(o.output !== undefined ? { output: resolve(process.cwd(), o.output) } : {}),
    really: o.really === true,
    storageOnly: o.storageOnly === true,
    json: o.json === true,
    ...(scaleOut ? { scaleOut } : {}),
    publishUnchanged: o.publishUnchanged,
  });
  return { options, warnings };
}
