/**
 * Start-up: the whole `./build configs --clean` process (shell wrapper, node, module loading, config resolution,
 * images.yaml written) on the official configs, wall time over N runs, and how many JavaScript files the run
 * loads (counted with strace when it is installed). Also `./build --version` and `./build state --help`, which
 * should load almost nothing.
 *
 * Target (issue 14): at least 15x faster than alpine-cloud-images' `./build configs`. With `--original DIR` (a
 * checkout of alpine-cloud-images whose `work/` Python environment its `./build` has set up: mergedeep, pyhocon,
 * python-dateutil, ruamel.yaml, boto3) the original is run too, in temporary copies of DIR, alternating with
 * ours run by run so both see the same machine:
 *   - on the HOCON twin of our configs (test/fixtures/hocon/configs): the same 192-variant matrix in the
 *     original's own format, and the same input files for both tools (ours reads them with --custom);
 *   - on its own configs as they are in DIR.
 * Both tools read the same local releases.json: the copies' alpine.py gets a file:// releases URL instead of
 * alpinelinux.org (the only change to the original), and releases.json gets any version the original's own
 * configs name that the fixture lacks. PYTHONDONTWRITEBYTECODE is unset for the original, so its bytecode
 * cache (work/__pycache__) is used as on a normal machine; one warm-up run of each fills the caches.
 *
 *   npx tsx bench/startup.ts [--runs 9] [--original /path/to/alpine-cloud-images]
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const ROOT = join(import.meta.dirname, '..');
const argv = process.argv.slice(2);
const opt = (name: string) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
};
const runs = Number(opt('--runs')) || 9;
const originalDir = opt('--original') ?? process.env.ALPINE_CLOUD_IMAGES;
const TARGET = 15;
const FIXTURE_RELEASES = join(ROOT, 'test', 'fixtures', 'releases.json');
const HOCON_TWIN = join(ROOT, 'test', 'fixtures', 'hocon');
const env = { ...process.env, NO_COLOR: '1', AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' };

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

function timeRun(cmd: string, args: string[], cwd: string, runEnv: NodeJS.ProcessEnv = env): number {
  const t0 = performance.now();
  const r = spawnSync(cmd, args, { cwd, env: runEnv, stdio: ['ignore', 'ignore', 'pipe'] });
  const ms = performance.now() - t0;
  if (r.status !== 0)
    throw new Error(`${cmd} ${args.join(' ')} (in ${cwd}) failed: ${String(r.stderr).slice(-800)}`);
  return ms;
}

/** JavaScript files the process opens (dist/ and node_modules/), with strace; undefined without it. */
function modulesLoaded(args: string[]): { dist: number; deps: number } | undefined {
  try {
    execFileSync('strace', ['-V'], { stdio: 'ignore' });
  } catch {
    return undefined;
  }
  const dir = mkdtempSync(join(tmpdir(), 'bench-startup-'));
  const out = join(dir, 'trace');
  try {
    spawnSync('strace', ['-f', '-qq', '-e', 'trace=openat', '-o', out, join(ROOT, 'build'), ...args], {
      env,
      stdio: 'ignore',
    });
    const files = new Set<string>();
    for (const line of readFileSync(out, 'utf8').split('\n')) {
      const m = /openat\([^,]*, "([^"]+\.(?:m?js|cjs|json))"/.exec(line);
      if (m && !/= -1 /.test(line)) files.add(m[1]!);
    }
    const list = [...files].filter((f) => !f.endsWith('package.json'));
    return {
      dist: list.filter((f) => f.includes('/dist/') && !f.includes('/node_modules/')).length,
      deps: list.filter((f) => f.includes('/node_modules/')).length,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const s = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
const tmp = mkdtempSync(join(tmpdir(), 'bench-startup-'));
try {
  // releases.json for both tools: the fixture, plus any version the original's own configs name that it lacks
  // (a maintained branch, so none of them is dropped for its end of life)
  const releases = JSON.parse(readFileSync(FIXTURE_RELEASES, 'utf8')) as {
    release_branches: { rel_branch: string; [k: string]: unknown }[];
  };
  if (originalDir) {
    const have = new Set(releases.release_branches.map((b) => b.rel_branch));
    const versionDir = join(originalDir, 'configs', 'version');
    for (const f of existsSync(versionDir) ? readdirSync(versionDir) : []) {
      const v = /^(\d+\.\d+)\.conf$/.exec(f)?.[1];
      if (!v || have.has(`v${v}`)) continue;
      releases.release_branches.push({
        rel_branch: `v${v}`,
        branch_date: '2020-01-01',
        eol_date: '2099-01-01',
        arches: ['aarch64', 'x86_64'],
        releases: [{ version: `${v}.0`, date: '2020-01-01', notes: null }],
      });
    }
  }
  const releasesFile = join(tmp, 'releases.json');
  writeFileSync(releasesFile, JSON.stringify(releases));
  const releasesUrl = `file://${releasesFile}`;

  const work = join(tmp, 'work');
  const workTwin = join(tmp, 'work-twin');
  const ours = ['configs', '--clean', '--work-dir', work, '--releases-url', releasesUrl];
  const oursTwin = [
    'configs',
    '--clean',
    '--work-dir',
    workTwin,
    '--releases-url',
    releasesUrl,
    '--custom',
    HOCON_TWIN,
  ];
  const build = join(ROOT, 'build');
  timeRun(build, ['--version'], ROOT); // compiles dist/ if stale

  console.log(`whole process, wall time, median of ${runs} runs (load average ${loadavg()[0]!.toFixed(1)}):`);
  for (const [name, args] of [
    ['./build --version', ['--version']],
    ['./build state --help', ['state', '--help']],
  ] as const) {
    const m = median(Array.from({ length: runs }, () => timeRun(build, [...args], ROOT)));
    const mods = modulesLoaded([...args]);
    console.log(
      `  ${name.padEnd(44)} ${s(m)}${mods ? `  files loaded: ${mods.dist} ours + ${mods.deps} node_modules` : ''}`,
    );
  }

  interface Case {
    readonly name: string;
    readonly run: () => number;
    readonly times: number[];
  }
  const cases: Case[] = [
    { name: 'ours, official YAML configs', run: () => timeRun(build, ours, ROOT), times: [] },
    { name: 'ours, HOCON twin (--custom)', run: () => timeRun(build, oursTwin, ROOT), times: [] },
  ];
  if (originalDir) {
    const pyEnv = { ...process.env };
    delete pyEnv.PYTHONDONTWRITEBYTECODE;
    const copy = (name: string, configs?: string) => {
      const dir = join(tmp, name);
      cpSync(resolve(originalDir), dir, { recursive: true, verbatimSymlinks: true });
      rmSync(join(dir, 'work', 'images.yaml'), { force: true });
      const alpinePy = join(dir, 'alpine.py');
      const text = readFileSync(alpinePy, 'utf8');
      const patched = text.replace(/(DEFAULT_RELEASES_URL\s*=\s*)['"][^'"]+['"]/, `$1'${releasesUrl}'`);
      if (patched === text)
        throw new Error(`${alpinePy}: no DEFAULT_RELEASES_URL to point at ${releasesFile}`);
      writeFileSync(alpinePy, patched);
      if (configs) {
        rmSync(join(dir, 'configs'), { recursive: true, force: true });
        cpSync(configs, join(dir, 'configs'), { recursive: true, verbatimSymlinks: true });
      }
      return dir;
    };
    const twin = copy('original-twin', join(HOCON_TWIN, 'configs'));
    const own = copy('original-own');
    const orig = (dir: string) => () => timeRun(join(dir, 'build'), ['configs', '--clean'], dir, pyEnv);
    cases.push(
      { name: 'alpine-cloud-images, HOCON twin', run: orig(twin), times: [] },
      { name: 'alpine-cloud-images, its own configs', run: orig(own), times: [] },
    );
  }
  for (const c of cases) c.run(); // warm-up: page cache, the original's bytecode cache
  for (let i = 0; i < runs; i++) for (const c of cases) c.times.push(c.run());

  const variants = (f: string) =>
    existsSync(f)
      ? readFileSync(f, 'utf8')
          .split('\n')
          .filter((l) => /^\S.*:$/.test(l) && l !== '---').length
      : 0;
  const counts = [variants(join(work, 'images.yaml')), variants(join(workTwin, 'images.yaml'))];
  if (originalDir) {
    counts.push(variants(join(tmp, 'original-twin', 'work', 'images.yaml')));
    counts.push(variants(join(tmp, 'original-own', 'work', 'images.yaml')));
  }
  const mods = modulesLoaded(ours);
  console.log(`./build configs --clean, alternating run by run (load average ${loadavg()[0]!.toFixed(1)}):`);
  cases.forEach((c, i) => {
    console.log(
      `  ${c.name.padEnd(40)} ${s(median(c.times))} (best ${s(Math.min(...c.times))}), ${counts[i]} variants` +
        (i === 0 && mods ? `, files loaded: ${mods.dist} ours + ${mods.deps} node_modules` : ''),
    );
  });
  if (originalDir) {
    const [oursYaml, oursTwinM, origTwin, origOwn] = cases.map((c) => median(c.times)) as [
      number,
      number,
      number,
      number,
    ];
    const ratio = (a: number, b: number) => `${(a / b).toFixed(1)}x`;
    console.log(
      `  the same matrix: original ${s(origTwin)} / ours ${s(oursYaml)} = ${ratio(origTwin, oursYaml)} ` +
        `(target >= ${TARGET}x: ${origTwin / oursYaml >= TARGET ? 'met' : 'NOT met'}); ` +
        `the same files (HOCON): ${ratio(origTwin, oursTwinM)}`,
    );
    console.log(
      `  the original on its own configs (${counts[3]} variants): ${s(origOwn)}, ${ratio(origOwn, oursYaml)} ours`,
    );
  } else {
    console.log(
      '  (give --original DIR, a checkout of alpine-cloud-images with its work/ environment, to compare)',
    );
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
