// Benchmark of the local build's own work around Packer, on this machine:
//   1. builder ISO verification (sha512 + sha256 + OpenPGP signature) of a 128 MiB file, MB/s
//   2. the accelerator probe (KVM probe guest, or the reason it was skipped) and the TCG probe guest
//   3. conversion and compression of an image like the ones built here: a 448 MiB disk with ~180 MiB of
//      file system data (the e2e image when one is passed, else a synthetic one), time and size per format
//   4. with --e2e: a full `./build local` of the test overlay's BIOS variant (needs the cached stand-in
//      builder ISO, see test/fixtures/local/make-builder.sh) with the time spent in each build phase
// Run: npx tsx bench/local.ts [--e2e] [image.qcow2]
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { probeAccelerator, runProbeGuest } from '../src/local/accel.js';
import { type ConvertTarget, compressImage, convertImage } from '../src/local/convert.js';
import { fetchVerifiedIso, loadTrustedKeys } from '../src/local/iso.js';
import { silentLogger } from '../src/util/log.js';
import {
  builderIsoPath,
  makeTestKey,
  overlayWithKey,
  publishIso,
  REPO_ROOT,
} from '../test/fixtures/local/mirror.js';
import { runBuild } from '../test/helpers/cli.js';

const args = process.argv.slice(2);
const e2e = args.includes('--e2e');
const given = args.find((a) => !a.startsWith('--'));
const MiB = 1024 * 1024;

function secs(ms: number): string {
  return `${(ms / 1000).toFixed(2)} s`;
}

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t0 = performance.now();
  const r = await fn();
  return [r, performance.now() - t0];
}

const base = await mkdtemp(join(tmpdir(), 'bench-local-'));
console.log(
  `machine: ${cpus().length} cores, load ${loadavg()
    .map((l) => l.toFixed(2))
    .join(' ')}`,
);
try {
  // ---- 1. ISO verification ----
  const key = await makeTestKey();
  const iso = join(base, 'builder.iso');
  await writeFile(iso, randomBytes(128 * MiB));
  const m = await publishIso(join(base, 'cdn'), iso, {
    version: '3.24',
    release: '3.24.1',
    arch: 'x86_64',
    key,
  });
  await mkdir(join(base, 'keys'));
  await writeFile(join(base, 'keys', 'k.asc'), key.publicArmored);
  const trusted = await loadTrustedKeys([join(base, 'keys')]);
  const [, first] = await timed(() =>
    fetchVerifiedIso(m.isoUrl, { cacheDir: join(base, 'iso'), trusted, log: silentLogger() }),
  );
  const [, cached] = await timed(() =>
    fetchVerifiedIso(m.isoUrl, { cacheDir: join(base, 'iso'), trusted, log: silentLogger() }),
  );
  console.log('\nISO download + verification, 128 MiB (file:// mirror):');
  console.log(
    `  first run (copy + sha512 + sha256 + signature): ${secs(first)}  (${(128 / (first / 1000)).toFixed(0)} MiB/s)`,
  );
  console.log(
    `  cached run (verify again):                       ${secs(cached)}  (${(128 / (cached / 1000)).toFixed(0)} MiB/s)`,
  );
  await rm(join(base, 'iso'), { recursive: true });
  await rm(iso);

  // ---- 2. accelerator ----
  const [choice, probeMs] = await timed(() => probeAccelerator({ arch: 'x86_64' }));
  console.log('\naccelerator probe:');
  console.log(`  choice: ${choice.accelerator} in ${secs(probeMs)} — ${choice.reason}`);
  const tcg = await runProbeGuest({ arch: 'x86_64', accel: 'tcg', timeoutMs: 30_000 });
  console.log(`  the same probe guest under TCG: ${secs(tcg.ms)} (${tcg.ok ? 'ok' : 'failed'})`);

  // ---- 3. conversion and compression ----
  let source = given;
  if (!source) {
    source = join(base, 'image.qcow2');
    const raw = join(base, 'seed.raw');
    execFileSync('truncate', ['-s', '448M', raw]);
    // ~180 MiB of data: half incompressible, half text-like
    execFileSync('sh', [
      '-c',
      `head -c ${90 * MiB} /dev/urandom | dd of=${raw} bs=1M seek=8 conv=notrunc status=none && yes 'alpine cloud image bench line' | head -c ${90 * MiB} | dd of=${raw} bs=1M seek=200 conv=notrunc status=none`,
    ]);
    execFileSync('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, source]);
    await rm(raw);
  }
  const qsize = (await stat(source)).size;
  console.log(
    `\nconversion and compression of ${given ?? 'a synthetic 448 MiB disk'} (qcow2 ${(qsize / MiB).toFixed(0)} MiB):`,
  );
  const run = async (cmd: string, a: readonly string[]) => {
    execFileSync(cmd, [...a], { stdio: 'ignore' });
  };
  const rows: [string, number, number][] = [];
  const target = (
    format: string,
    opts: string | null,
    compress: string | null,
    name: string,
  ): ConvertTarget => ({
    configKey: 'bench',
    source: source!,
    format,
    formatOpts: opts,
    compress,
    imagePath: join(base, `${name}.${format}`),
    uploadPath:
      compress === 'tar.gz'
        ? join(base, `${name}.tar.gz`)
        : join(base, `${name}.${format}${compress ? `.${compress}` : ''}`),
  });
  for (const [fmt, opts] of [
    ['qcow2', null],
    ['vhd', 'vhd/force-size'],
    ['vhd', 'vhd/fixed_force-size'],
    ['raw', null],
    ['raw.tar.gz', null],
  ] as const) {
    const t = target(fmt, opts, null, `c-${fmt}-${opts ?? 'none'}`.replace(/[/]/g, '_'));
    const [, ms] = await timed(() => convertImage(t, run));
    const du = Number(execFileSync('du', ['-k', t.imagePath], { encoding: 'utf8' }).split('\t')[0]) * 1024;
    rows.push([`${fmt}${opts ? ` (${opts})` : ''}`, ms, du]);
  }
  const rawT = target('raw', null, null, 'c-raw-none');
  for (const c of ['gz', 'bz2', 'xz', 'zstd', 'tar.gz']) {
    const t = { ...rawT, compress: c, uploadPath: join(base, `z.raw.${c}`) };
    const [, ms] = await timed(() => compressImage(t, run));
    rows.push([`raw -> ${c}`, ms, (await stat(t.uploadPath)).size]);
  }
  for (const [what, ms, bytes] of rows) {
    console.log(
      `  ${what.padEnd(30)} ${secs(ms).padStart(9)}  ${(bytes / MiB).toFixed(1).padStart(7)} MiB on disk`,
    );
  }

  // ---- 4. full build ----
  if (e2e) {
    if (!existsSync(builderIsoPath())) {
      console.log('\n--e2e: no cached builder ISO; run the local e2e test once first');
    } else {
      const key2 = await makeTestKey();
      const { cdnUrl } = await publishIso(join(base, 'cdn2'), builderIsoPath(), {
        version: '3.24',
        release: '3.24.1',
        arch: 'x86_64',
        key: key2,
      });
      const overlay = await overlayWithKey(join(base, 'overlay'), key2);
      const t0 = Date.now();
      const r = await runBuild(
        [
          'local',
          ...['--custom', overlay, '--work-dir', join(base, 'work')],
          ...[
            '--releases-url',
            `file://${join(REPO_ROOT, 'test', 'fixtures', 'releases.json')}`,
            '--cdn-url',
            cdnUrl,
          ],
          ...['--vars', join(overlay, 'test-local.pkrvars.hcl'), '--log-format', 'json'],
          ...['--only', '3.24', 'x86_64', 'bios', 'testinit', 'vm', 'generic'],
        ],
        { timeoutMs: 15 * 60_000 },
      );
      console.log(
        `\nfull ./build local (configs + state + one BIOS variant): ${secs(Date.now() - t0)}, exit ${r.code}`,
      );
      const phases: { state: string; at: number }[] = [];
      for (const line of r.stderr.split('\n')) {
        try {
          const o = JSON.parse(line) as { state?: string; time?: number; variant?: string };
          if (o.state && o.variant && o.time) phases.push({ state: o.state, at: o.time });
        } catch {
          // not JSON
        }
      }
      for (let i = 0; i + 1 < phases.length; i++) {
        console.log(`  ${phases[i]!.state.padEnd(18)} ${secs(phases[i + 1]!.at - phases[i]!.at)}`);
      }
    }
  }
} finally {
  await rm(base, { recursive: true, force: true });
}
