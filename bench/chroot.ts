// The chroot builder's figures (npx tsx bench/chroot.ts [--vm]): per-variant wall time of `./build local` for a
// tiny x86_64 image from the real Alpine mirror (ALPINE_MIRROR) plus the stand-in repository, cold (empty work
// directory: minirootfs download and verification) and warm (a new work directory with the first one's caches:
// minirootfs, package cache), the peak memory
// (RSS of the build's whole process tree, sampled) and peak disk (work directory, sampled), and `--parallel 2`
// building two variants (BIOS + UEFI) against one alone. Targets (issue #10): at least 10x faster per variant
// than the VM builder here, warm under 10 s, two variants in parallel in at most 1.3x the time of one.
// --vm also measures the VM builder (bench/local.ts --e2e: Packer + QEMU with the Debian stand-in builder ISO;
// Alpine's ISO cannot be had offline), else its last measured figure from the README is printed for reference.
import { execFile, spawn } from 'node:child_process';
import { cp, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { chrootUnavailable, localArgs, prepareChrootEnv } from '../test/helpers/alpine-image.js';
import { REPO_ROOT } from '../test/helpers/alpine-standin.js';

const run = promisify(execFile);

/** The VM builder's per-variant figure measured on this machine (README, bench/local.ts --e2e). */
const VM_REFERENCE_S = 100;

interface Measured {
  wallS: number;
  /** per variant, from the build's own progress lines ("<key>: done [3s]", "[1m05s]") */
  variants: Record<string, number>;
  peakRssMiB: number;
  peakDiskMiB: number;
  code: number;
  stderr: string;
}

async function treeRssKiB(pid: number): Promise<number> {
  // every process of the tree: its children by /proc/<pid>/task/*/children
  let total = 0;
  const stack = [pid];
  while (stack.length) {
    const p = stack.pop()!;
    try {
      const status = await readFile(`/proc/${p}/status`, 'utf8');
      total += Number(/^VmRSS:\s+(\d+)/m.exec(status)?.[1] ?? 0);
      const children = await readFile(`/proc/${p}/task/${p}/children`, 'utf8');
      stack.push(...children.split(/\s+/).filter(Boolean).map(Number));
    } catch {
      // gone
    }
  }
  return total;
}

async function duMiB(dir: string): Promise<number> {
  try {
    const r = await run('du', ['-sm', dir]);
    return Number(r.stdout.split(/\s/)[0]);
  } catch {
    return 0;
  }
}

async function measure(args: string[], work: string): Promise<Measured> {
  const t0 = Date.now();
  const child = spawn(join(REPO_ROOT, 'build'), args, {
    cwd: REPO_ROOT,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (b: Buffer) => {
    stderr += b.toString();
  });
  let peakRss = 0;
  let peakDisk = 0;
  let running = true;
  const sampler = (async () => {
    while (running) {
      peakRss = Math.max(peakRss, await treeRssKiB(child.pid ?? 0));
      peakDisk = Math.max(peakDisk, await duMiB(work));
      await new Promise((r) => setTimeout(r, 300));
    }
  })();
  const code = await new Promise<number>((r) => child.on('exit', (c) => r(c ?? 1)));
  running = false;
  await sampler;
  const variants: Record<string, number> = {};
  for (const m of stderr.matchAll(/(\S+): done \[(?:(\d+)m)?(\d+)s\]/g)) {
    variants[m[1]!] = Number(m[2] ?? 0) * 60 + Number(m[3]);
  }
  return {
    wallS: (Date.now() - t0) / 1000,
    variants,
    peakRssMiB: Math.round(peakRss / 1024),
    peakDiskMiB: peakDisk,
    code,
    stderr,
  };
}

function row(label: string, m: Measured): string {
  const v = Object.entries(m.variants)
    .map(([k, s]) => `${k.replace(/^3\.19-x86_64-/, '')} ${s} s`)
    .join(', ');
  return `${label.padEnd(34)} ${m.wallS.toFixed(1).padStart(6)} s whole run | per variant: ${v} | peak RSS ${m.peakRssMiB} MiB | peak disk ${m.peakDiskMiB} MiB`;
}

async function main(): Promise<void> {
  const why = await chrootUnavailable('x86_64', 'bios');
  if (why) {
    console.log(`bench/chroot: skipped (${why})`);
    return;
  }
  await run(join(REPO_ROOT, 'build'), ['--help'], { cwd: REPO_ROOT }); // compiled before timing
  const base = await mkdtemp(join(tmpdir(), 'bench-chroot-'));
  try {
    const env = await prepareChrootEnv(join(base, 'env'));
    const one = ['3.19', 'x86_64', 'bios', 'tiny', 'vm', 'nocloud'];
    const two = ['3.19', 'x86_64', 'tiny', 'vm', 'nocloud']; // bios + uefi
    const w1 = join(base, 'w1');
    const cold = await measure(localArgs(env, w1, one), w1);
    if (cold.code !== 0) throw new Error(`cold build failed:\n${cold.stderr.slice(-2000)}`);
    // warm: a new work directory with the caches of the first (the verified minirootfs, the package cache)
    let n = 0;
    const warmDir = async (): Promise<string> => {
      const w = join(base, `warm${++n}`);
      await mkdir(w, { recursive: true });
      for (const c of ['minirootfs', 'apk-cache']) await cp(join(w1, c), join(w, c), { recursive: true });
      return w;
    };
    const wa = await warmDir();
    const warm = await measure(localArgs(env, wa, one), wa);
    const wb = await warmDir();
    const warm2 = await measure(localArgs(env, wb, one), wb);
    const wc = await warmDir();
    const single = await measure(localArgs(env, wc, [...two, 'bios']), wc);
    const wd = await warmDir();
    const par = await measure(localArgs(env, wd, two, ['--parallel', '2']), wd);
    console.log('chroot builder, tiny x86_64 image from the Alpine mirror (TCG not involved: no VM)');
    console.log(row('cold (empty work dir)', cold));
    console.log(row('warm (caches of the first run)', warm));
    console.log(row('warm, again', warm2));
    console.log(row('one variant (BIOS)', single));
    console.log(row('two variants, --parallel 2', par));
    const warmS = Math.min(...Object.values(warm.variants), ...Object.values(warm2.variants));
    const ratio = par.wallS / single.wallS;
    let vmS = VM_REFERENCE_S;
    let vmWhat = `reference figure from the README (bench/local.ts --e2e, ~${VM_REFERENCE_S} s)`;
    if (process.argv.includes('--vm')) {
      const t0 = Date.now();
      const r = await run('npx', ['tsx', 'bench/local.ts', '--e2e'], { cwd: REPO_ROOT, maxBuffer: 64 << 20 });
      vmS = (Date.now() - t0) / 1000;
      vmWhat = `measured now (bench/local.ts --e2e)\n${r.stdout}`;
    }
    console.log(`VM builder per variant: ${vmS.toFixed(0)} s, ${vmWhat}`);
    console.log(
      `speed-up warm: ${(vmS / warmS).toFixed(1)}x (target >= 10x); warm per variant ${warmS} s (target < 10 s); ` +
        `--parallel 2 for two variants: ${ratio.toFixed(2)}x one (target <= 1.3x); load average ${(await readFile('/proc/loadavg', 'utf8')).split(' ')[0]}`,
    );
  } finally {
    await rm(base, { recursive: true, force: true });
  }
}

await main();
