// Benchmark of the supply chain's cost per image (target: at most 2 s on this machine): after a build, reading
// the root filesystem of the disk without mounting it (qcow2 -> raw, debugfs inode listing, rdump, sha256 of
// every file: the manifest and content digest), the SPDX 2.3 and CycloneDX 1.6 SBOMs, the provenance, and
// writing them all with their .sha512: exactly what the local step runs (produceSupplyChain).
// The disk: a real Alpine 3.19 root from the mirror (alpine-base openssh chrony e2fsprogs tiny-cloud-nocloud,
// the packages of a tiny image) in a partitioned ext4 qcow2, or the qcow2 given as the argument.
// Run: npx tsx bench/supply.ts [image.qcow2] [--runs N]
import { execFileSync } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Image } from '../src/state/image.js';
import { parseInstalledDb } from '../src/supply/apkdb.js';
import { readDisk } from '../src/supply/disk.js';
import { configDigests, produceSupplyChain, toolInfo } from '../src/supply/produce.js';
import { buildCycloneDx, buildSpdx, serializeCycloneDx, serializeSpdx } from '../src/supply/sbom.js';
import { sampleConfig } from '../test/fixtures/local/sample.js';
import { ROOT as REPO_ROOT } from '../test/helpers/cli.js';
import { alpineMirror, ext4Disk, installedRoot, SKIP_NO_MIRROR } from '../test/helpers/supply-root.js';

const args = process.argv.slice(2);
const runsAt = args.indexOf('--runs');
const runs = runsAt >= 0 ? Number(args[runsAt + 1]) : 5;
const given = args.find((a, i) => !a.startsWith('--') && args[i - 1] !== '--runs');

function stats(ms: number[]): string {
  const s = [...ms].sort((a, b) => a - b);
  return `median ${s[Math.floor(s.length / 2)]!.toFixed(0)} ms, min ${s[0]!.toFixed(0)} ms, max ${s[s.length - 1]!.toFixed(0)} ms`;
}

async function main(): Promise<void> {
  const base = await mkdtemp(join(tmpdir(), 'cib-bench-supply-'));
  try {
    let qcow2 = given;
    if (!qcow2) {
      const mirror = alpineMirror();
      if (!mirror) {
        console.log(`bench/supply: skipped (${SKIP_NO_MIRROR})`);
        return;
      }
      const root = installedRoot(mirror, [
        'alpine-base',
        'openssh',
        'chrony',
        'e2fsprogs',
        'tiny-cloud-nocloud',
      ]);
      const raw = join(base, 'disk.raw');
      ext4Disk(root, raw);
      qcow2 = join(base, 'disk.qcow2');
      execFileSync('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', raw, qcow2]);
      await rm(raw);
    }
    const work = join(base, 'work');
    const image = new Image(sampleConfig({ image_format: 'qcow2', image_format_opts: null }), work);
    await mkdir(image.localDir, { recursive: true });
    await copyFile(qcow2, image.localImage);
    await copyFile(qcow2, image.uploadPath);
    const tool = await toolInfo(REPO_ROOT);
    const digests = await configDigests(REPO_ROOT, []);

    const total: number[] = [];
    const disk: number[] = [];
    const sboms: number[] = [];
    let packages = 0;
    let entries = 0;
    for (let i = 0; i < runs; i++) {
      let t = performance.now();
      const d = await readDisk(image.localImage);
      disk.push(performance.now() - t);
      const pkgs = parseInstalledDb(d.installedDb ?? '');
      packages = pkgs.length;
      entries = d.manifest.entries.length;
      t = performance.now();
      const input = {
        subject: { name: image.imageName, version: '3.24.1-r0', release: '3.24.1', arch: 'x86_64' },
        packages: pkgs,
        created: new Date(),
        tool,
      };
      serializeSpdx(buildSpdx(input));
      serializeCycloneDx(buildCycloneDx(input));
      sboms.push(performance.now() - t);
      t = performance.now();
      await produceSupplyChain(image, {
        rootDir: REPO_ROOT,
        workDir: work,
        custom: [],
        tool,
        started: new Date(),
        finished: new Date(),
        configDigests: digests,
      });
      total.push(performance.now() - t);
    }
    console.log(
      `bench/supply: ${runs} runs on ${cpus().length} CPU(s), load ${loadavg()[0]!.toFixed(2)}; ` +
        `${packages} packages, ${entries} manifest entries`,
    );
    console.log(`  read the disk (raw, inodes, rdump, manifest, digest): ${stats(disk)}`);
    console.log(`  SPDX + CycloneDX documents:                          ${stats(sboms)}`);
    console.log(
      `  all of it, as the local step runs it (+ provenance, files): ${stats(total)}  (target <= 2000 ms)`,
    );
  } finally {
    await rm(base, { recursive: true, force: true });
  }
}

await main();
