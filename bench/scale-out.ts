// Benchmark: wall time of N = 1, 2, 4 workers (`./build upload --shard I/N`, each with its own work directory)
// over one storage, on 12 images whose local build is a stand-in of fixed duration (test/helpers/scale-out.ts:
// the stand-in packer sleeps, conversion and checksums are real). Target: 4 workers at least 3.2x faster than 1.
// Also prints the lease traffic (conditional requests to the store) per image.
// Run: npx tsx bench/scale-out.ts [--build-seconds S] [--store file|s3|ssh] [--workers 1,2,4]

import { join } from 'node:path';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { runBuild } from '../test/helpers/cli.js';
import { motoUnavailableReason, startMoto } from '../test/helpers/moto.js';
import { SCALE_OUT_IMAGES, scaleOutFixture } from '../test/helpers/scale-out.js';
import { sshdUnavailableReason, startSshd } from '../test/helpers/sshd.js';

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(name);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : dflt;
}
const buildSeconds = Number(arg('--build-seconds', '10'));
const store = arg('--store', 'file');
const counts = arg('--workers', '1,2,4').split(',').map(Number);

let env: Record<string, string> = {};
let storageUrl: (n: number) => string | undefined = () => undefined;
const stops: (() => Promise<void>)[] = [];
if (store === 's3') {
  const why = motoUnavailableReason();
  if (why) {
    console.log(`scale-out: skipped: ${why}`);
    process.exit(0);
  }
  const moto = await startMoto();
  stops.push(() => moto.stop());
  const client = new S3Client({
    endpoint: moto.endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' },
  });
  for (const n of counts) await client.send(new CreateBucketCommand({ Bucket: `bench-${n}` }));
  client.destroy();
  env = moto.env;
  storageUrl = (n) => `s3://bench-${n}/{v_version}/{cloud}/{arch}`;
} else if (store === 'ssh') {
  const why = sshdUnavailableReason();
  if (why) {
    console.log(`scale-out: skipped: ${why}`);
    process.exit(0);
  }
  const sshd = await startSshd();
  stops.push(() => sshd.stop());
  env = sshd.env;
  storageUrl = (n) => `${sshd.urlPrefix}/bench-${n}/{v_version}/{cloud}/{arch}`;
}

console.log(
  `scale-out: ${SCALE_OUT_IMAGES} images, stand-in build of ${buildSeconds} s each, ${store} storage, ` +
    `workers ${counts.join(', ')}`,
);
const rows: { n: number; wall: number; requests: number; built: number }[] = [];
try {
  for (const n of counts) {
    const url = storageUrl(n);
    const fx = await scaleOutFixture({ buildSeconds, ...(url ? { storageUrl: url } : {}) });
    try {
      const t0 = performance.now();
      const results = await Promise.all(
        Array.from({ length: n }, (_, i) =>
          runBuild(
            [
              'upload',
              '--shard',
              `${i + 1}/${n}`,
              '--run-id',
              `bench-${n}`,
              ...fx.args(join(fx.base, `w${i + 1}`)),
            ],
            { env: { ...fx.env, ...env }, timeoutMs: 1_800_000 },
          ),
        ),
      );
      const wall = (performance.now() - t0) / 1000;
      for (const r of results) {
        if (r.code !== 0) throw new Error(`a worker failed (exit ${r.code}):\n${r.stderr.slice(-3000)}`);
      }
      const requests = results
        .map((r) => Number(/lease requests: (\d+)/.exec(r.stdout)?.[1] ?? Number.NaN))
        .reduce((a, b) => a + b, 0);
      const { readFile } = await import('node:fs/promises');
      const built = (await readFile(fx.trace, 'utf8'))
        .split('\n')
        .filter((l) => l.startsWith('start ')).length;
      rows.push({ n, wall, requests, built });
      console.log(
        `  ${n} worker(s): ${wall.toFixed(1)} s wall, ${built} builds, ` +
          `${requests} lease requests (${(requests / SCALE_OUT_IMAGES).toFixed(1)} per image)`,
      );
    } finally {
      await fx.cleanup();
    }
  }
} finally {
  for (const s of stops) await s();
}
const one = rows.find((r) => r.n === 1);
const four = rows.find((r) => r.n === 4);
if (one && four) {
  const speedup = one.wall / four.wall;
  console.log(
    `  speedup with 4 workers: ${speedup.toFixed(2)}x (target >= 3.2x) ${speedup >= 3.2 ? 'OK' : 'BELOW TARGET'}`,
  );
}
