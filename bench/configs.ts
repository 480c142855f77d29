// Benchmark: time to resolve the full official image matrix (configs/, YAML) and its HOCON twin
// (test/fixtures/hocon/configs), each in a fresh node process on the compiled code, as `./build configs` runs it.
// Prints, per tree: module import, resolution (load + releases.json + matrix + normalisation), images.yaml text,
// and reading it back, as the median and the worst of N cold runs; then the wall time of the real
// `./build configs --clean`. Target: resolution well under 500 ms.
// Run: npx tsx bench/configs.ts [runs]
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { BUILD, ROOT, runBuild } from '../test/helpers/cli.js';

const runs = Number(process.argv[2] ?? 7);
const releasesUrl = `file://${join(ROOT, 'test', 'fixtures', 'releases.json')}`;
const now = new Date().toISOString();

interface Figures {
  import: number;
  resolve: number;
  write: number;
  read: number;
  bytes: number;
  combinations: number;
  variants: number;
  excluded: number;
  endOfLife: number;
}

function measure(configsDir: string, at: string): Figures {
  const out = execFileSync(
    process.execPath,
    [join(ROOT, 'bench', 'configs-child.mjs'), ROOT, configsDir, releasesUrl, at],
    {
      encoding: 'utf8',
    },
  );
  return JSON.parse(out.trim()) as Figures;
}

function stats(values: number[]): string {
  const s = [...values].sort((a, b) => a - b);
  const median = s[Math.floor(s.length / 2)]!;
  return `median ${median.toFixed(1).padStart(6)} ms   worst ${s[s.length - 1]!.toFixed(1).padStart(6)} ms`;
}

// compile dist/ if stale
execFileSync(BUILD, ['--help'], { stdio: 'ignore' });
console.log(
  `configs bench: ${runs} cold runs each, ${cpus().length} CPUs, load average ${loadavg()[0]!.toFixed(2)}, ${now}`,
);

let worstResolve = 0;
for (const [label, dir, at] of [
  ['YAML configs/ (today)', join(ROOT, 'configs'), now],
  ['YAML configs/ (2026-03-01, every version supported)', join(ROOT, 'configs'), '2026-03-01T12:00:00Z'],
  ['HOCON twin (today)', join(ROOT, 'test', 'fixtures', 'hocon', 'configs'), now],
] as const) {
  const all: Figures[] = [];
  for (let i = 0; i < runs; i++) all.push(measure(dir, at));
  const f = all[0]!;
  console.log(
    `\n${label}: ${f.variants} variants from ${f.combinations} combinations (${f.excluded} excluded, ${f.endOfLife} past end of life), images.yaml ${(f.bytes / 1024).toFixed(0)} KiB`,
  );
  console.log(`  import modules      ${stats(all.map((x) => x.import))}`);
  console.log(`  resolve             ${stats(all.map((x) => x.resolve))}`);
  console.log(`  images.yaml text    ${stats(all.map((x) => x.write))}`);
  console.log(`  images.yaml read    ${stats(all.map((x) => x.read))}`);
  if (label.startsWith('YAML')) worstResolve = Math.max(worstResolve, ...all.map((x) => x.resolve));
}

const walls: number[] = [];
const work = await mkdtemp(join(tmpdir(), 'cib-bench-configs-'));
try {
  for (let i = 0; i < Math.min(runs, 5); i++) {
    const t = performance.now();
    const r = await runBuild(['configs', '--clean', '--work-dir', work, '--releases-url', releasesUrl]);
    walls.push(performance.now() - t);
    if (r.code !== 0) throw new Error(`./build configs failed: ${r.stderr}`);
  }
} finally {
  await rm(work, { recursive: true, force: true });
}
console.log(
  `\n./build configs --clean (whole process: node start, install, resolve, write)  ${stats(walls)}`,
);
console.log(
  `\nresolution of the YAML matrix: worst ${worstResolve.toFixed(1)} ms — target well under 500 ms: ${worstResolve < 500 ? 'met' : 'NOT met'}`,
);
