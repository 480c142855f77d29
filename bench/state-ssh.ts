// Benchmark: wall time and ssh connections of the real `./build state` over ssh:// storage with 200 variants
// whose metadata is in storage (loopback sshd). Target: one connection, under 2 s.
// Run: npx tsx bench/state-ssh.ts [runs]
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { Image } from '../src/state/image.js';
import { emptyState, stateAfter } from '../src/state/image-state.js';
import { metadataOf } from '../src/state/metadata.js';
import { BUILD, ROOT, runBuild } from '../test/helpers/cli.js';
import { makeOverlay, RELEASES_URL, readImages } from '../test/helpers/overlay.js';
import { sshdUnavailableReason, startSshd } from '../test/helpers/sshd.js';

const runs = Number(process.argv[2] ?? 5);
const reason = sshdUnavailableReason();
if (reason) {
  console.log(`state-ssh: skipped: ${reason}`);
  process.exit(0);
}

const sshd = await startSshd();
const root = await mkdtemp(join(tmpdir(), 'cib-bench-state-'));
try {
  const work = join(root, 'work');
  const overlay = await makeOverlay({
    storageUrl: `${sshd.urlPrefix}/store/{v_version}/{cloud}/{arch}`,
    versions: ['3.22', '3.23', '3.24', 'edge'],
    arches: ['x86_64', 'aarch64'],
    bootstraps: ['tiny', 'cloudinit', 'b3', 'b4', 'b5'],
    // (clouds whose plugins take the overlay's qcow2 images: the aws plugin requires vhd)
    clouds: ['generic', 'nocloud', 'azure', 'gcp', 'oci'],
    parent: root,
  });
  const args = ['--work-dir', work, '--custom', overlay, '--releases-url', RELEASES_URL];
  const cfg = await runBuild(['configs', ...args]);
  if (cfg.code !== 0) throw new Error(cfg.stderr);
  const images = Object.values(await readImages(work)).map((c) => new Image(c, work, emptyState(2)));
  // every variant has revisions r0..r2 in storage; the newest one's metadata is fetched
  for (const image of images) {
    const rel = image.storageUrl!.slice(sshd.urlPrefix.length + 1);
    const dir = join(sshd.home, rel);
    await mkdir(dir, { recursive: true });
    for (const rev of [0, 1, 2]) {
      const at = '2026-11-20T10:00:00.000Z';
      image.record(stateAfter.uploaded(stateAfter.built(emptyState(rev), at), at));
      const text = stringify(metadataOf(image, new Date('2026-11-20T10:00:00.000Z')));
      await writeFile(join(dir, image.metadataFile), text);
      await writeFile(
        join(dir, `${image.metadataFile}.sha512`),
        `${createHash('sha512').update(text).digest('hex')}\n`,
      );
    }
  }
  const times: number[] = [];
  let connections = 0;
  for (let i = 0; i < runs; i++) {
    await rm(join(work, 'images'), { recursive: true, force: true });
    const before = sshd.acceptedConnections();
    const t0 = process.hrtime.bigint();
    execFileSync(BUILD, ['state', ...args], {
      cwd: ROOT,
      env: { ...process.env, ...sshd.env },
      stdio: 'ignore',
    });
    times.push(Number(process.hrtime.bigint() - t0) / 1e9);
    connections = Math.max(connections, sshd.acceptedConnections() - before);
  }
  times.sort((a, b) => a - b);
  console.log(`state-ssh: variants=${images.length} runs=${runs}`);
  console.log(
    `state-ssh: wall median=${times[Math.floor(runs / 2)]!.toFixed(2)}s min=${times[0]!.toFixed(2)}s max=${times.at(-1)!.toFixed(2)}s (whole ./build process, cold work/images)`,
  );
  console.log(`state-ssh: ssh connections per run=${connections} (target 1)`);
} finally {
  await sshd.stop();
  await rm(root, { recursive: true, force: true });
}
