/**
 * Wall time of `publish` to 16 regions when every image copy takes L seconds in the EC2 emulator, with the
 * plugin's production timing (first status check after 1 s, backoff x1.5 capped at 3 s; no fixed sleeps).
 * Target: L plus a few seconds (at most L + 5 s). The original tool sleeps 180 s before its first check and then
 * polls every 30 s, region after region, so it needs at least 180 s whatever L is.
 *
 *   npx tsx bench/publish.ts [--copy-seconds 10,30] [--regions 16] [--api-latency-ms 20-80]
 *
 * Exits 1 when a run misses the target.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startEc2Emulator } from '../emulators/ec2/server.js';
import { getCloud } from '../src/clouds/index.js';
import { silentLogger } from '../src/util/log.js';
import { awsImage } from '../test/helpers/ec2-emulator.js';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? (process.argv[i + 1] ?? fallback) : fallback;
}

const copySeconds = arg('copy-seconds', '10,30')
  .split(',')
  .map((s) => Number(s));
const regionCount = Number(arg('regions', '16'));
const [latMin, latMax] = arg('api-latency-ms', '20-80').split('-').map(Number);
if (
  copySeconds.some((s) => !Number.isFinite(s) || s < 0) ||
  !Number.isInteger(regionCount) ||
  regionCount < 1
) {
  throw new Error('usage: --copy-seconds L[,L...] --regions N --api-latency-ms MIN-MAX');
}
const SOURCE = 'us-west-2';
const SLACK_S = 5;

async function once(L: number): Promise<{ seconds: number; calls: number; ok: number }> {
  const emu = await startEc2Emulator({
    latency: { apiMs: [latMin ?? 20, latMax ?? latMin ?? 80], copyMs: L * 1000, registerMs: 0, importMs: 0 },
  });
  const workDir = await mkdtemp(join(tmpdir(), 'bench-publish-'));
  try {
    const targets = emu.enabledRegions().filter((r) => r !== SOURCE);
    if (targets.length < regionCount)
      throw new Error(`the emulator has only ${targets.length} other regions`);
    const regions = Object.fromEntries(targets.slice(0, regionCount).map((r) => [r, true]));
    const image = awsImage(workDir, { regions, access: { PUBLIC: true } });
    const t = image.tags();
    const src = emu.seedImage(SOURCE, {
      name: image.imageName,
      tags: {
        project: t.project,
        image_key: t.image_key,
        revision: String(t.revision),
        Name: image.imageName,
      },
    });
    Object.assign(image.config, {
      import_id: src.imageId,
      import_region: SOURCE,
      imported: new Date().toISOString(),
    });
    const env = {
      AWS_ENDPOINT_URL_EC2: emu.url,
      AWS_ACCESS_KEY_ID: 'AKIDBENCH',
      AWS_SECRET_ACCESS_KEY: 'bench',
      AWS_REGION: SOURCE,
      AWS_CONFIG_FILE: '/dev/null',
      AWS_SHARED_CREDENTIALS_FILE: '/dev/null',
    };
    const started = performance.now();
    const res = await getCloud('aws').publishImage!(image, {
      log: silentLogger(),
      useBroker: false,
      env,
      workDir,
      cache: new Map(),
    });
    const seconds = (performance.now() - started) / 1000;
    if (res.failures.length > 0) throw new Error(`publish failed: ${JSON.stringify(res.failures)}`);
    return { seconds, calls: emu.calls.length, ok: Object.keys(res.artifacts).length };
  } finally {
    await emu.close();
    await rm(workDir, { recursive: true, force: true });
  }
}

let missed = false;
console.log(
  `publish to ${regionCount} regions (copies), API latency ${latMin}-${latMax} ms, production polling`,
);
for (const L of copySeconds) {
  const r = await once(L);
  const target = L + SLACK_S;
  const verdict = r.seconds <= target ? 'ok' : 'MISSED';
  if (r.seconds > target) missed = true;
  const original = Math.max(180, 180 + Math.ceil((L - 180) / 30) * 30);
  console.log(
    `copy takes L=${L}s: wall ${r.seconds.toFixed(2)} s (target <= ${target} s: ${verdict}); ` +
      `${r.ok} regions copied, ${r.calls} API calls; the original's schedule: >= ${original} s`,
  );
}
process.exit(missed ? 1 : 0);
