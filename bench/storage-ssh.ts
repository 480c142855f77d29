/**
 * What `./build state` does against ssh:// storage, for 200 variants, through one storage pool:
 * per variant, list `<name>-r*.yaml` in its storage directory and retrieve the newest metadata with its
 * checksum. Prints wall time and ssh connections (target: 1 connection, under 2 s).
 *
 *   npx tsx bench/storage-ssh.ts [--variants 200] [--parallel 8] [--repeat 3]
 *
 * Each run is a fresh pool (a fresh connection) into a fresh local directory; the target is judged on the median
 * run. The sshd is a real OpenSSH server on 127.0.0.1 (test/helpers/sshd.ts); exits 1 when the target is missed.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import pLimit from 'p-limit';
import { createStoragePool } from '../src/storage/index.js';
import { hashFile } from '../src/util/fs.js';
import { silentLogger } from '../src/util/log.js';
import { startSshd } from '../test/helpers/sshd.js';

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? Number(process.argv[i + 1]) : fallback;
  if (!Number.isInteger(v) || v < 1) throw new Error(`--${name} wants a positive integer`);
  return v;
}

interface Variant {
  name: string;
  /** storage directory relative to the remote home, as in storage_url ssh://host/<dir> */
  dir: string;
  newest: number;
}

function variants(count: number): Variant[] {
  const out: Variant[] = [];
  const versions = ['3.18', '3.19', '3.20', '3.21', 'edge'];
  const clouds = ['aws', 'azure', 'gcp', 'oci', 'nocloud'];
  const arches = ['x86_64', 'aarch64'];
  const firmwares = ['bios', 'uefi'];
  const bootstraps = ['tiny', 'cloudinit'];
  for (const v of versions)
    for (const c of clouds)
      for (const a of arches)
        for (const f of firmwares)
          for (const b of bootstraps) {
            const i = out.length;
            // mostly r0..r2; every 17th variant has been revised a dozen times (r11 must beat r2 and r1)
            const newest = i % 17 === 0 ? 11 : i % 3;
            const release = v === 'edge' ? 'edge' : `${v}.0`;
            out.push({
              name: `alpine-${release}-${a}-${f}-${b}-${c}`,
              dir: `images/${v === 'edge' ? 'edge' : `v${v}`}/cloud/${c}/${a}`,
              newest,
            });
          }
  while (out.length < count) {
    const i = out.length;
    out.push({ name: `alpine-extra${i}-x86_64-bios-tiny-aws`, dir: 'images/extra', newest: i % 3 });
  }
  return out.slice(0, count);
}

async function layout(home: string, vs: Variant[]): Promise<number> {
  let files = 0;
  for (const v of vs) {
    const dir = join(home, v.dir);
    await mkdir(dir, { recursive: true });
    for (let r = 0; r <= v.newest; r++) {
      const file = join(dir, `${v.name}-r${r}.yaml`);
      const body = [
        `name: ${v.name}-r${r}`,
        `revision: ${r}`,
        'built: 2024-05-01T12:00:00Z',
        'uploaded: 2024-05-01T12:10:00Z',
        `description: Alpine Linux benchmark image ${v.name}`,
        'artifacts: null',
        '',
      ].join('\n');
      await writeFile(file, body);
      await writeFile(`${file}.sha512`, `${await hashFile(file)}\n`);
      // the images themselves sit beside the metadata, as after `build upload`
      await writeFile(join(dir, `${v.name}-r${r}.qcow2`), '');
      files += 3;
    }
  }
  return files;
}

async function main(): Promise<void> {
  const count = arg('variants', 200);
  const parallel = arg('parallel', 8);
  const repeat = arg('repeat', 3);
  const sshd = await startSshd();
  const local = await mkdtemp(join(tmpdir(), 'bench-storage-'));
  let failed = false;
  try {
    const vs = variants(count);
    const files = await layout(sshd.home, vs);
    const dirs = new Set(vs.map((v) => v.dir)).size;
    console.log(
      `storage: ${files} files in ${dirs} directories on ${sshd.urlPrefix} (OpenSSH sshd, loopback)`,
    );

    interface Run {
      wallMs: number;
      cpuMs: number;
      firstOpMs: number;
      connections: number;
      accepted: number;
      correct: number;
    }
    // one `./build state`: a fresh pool (so a fresh connection) and a fresh local work directory
    const once = async (round: number): Promise<Run> => {
      const before = sshd.acceptedConnections();
      const pool = createStoragePool({ log: silentLogger(), env: { ...process.env, ...sshd.env } });
      const limit = pLimit(parallel);
      const cpu = process.cpuUsage();
      const started = performance.now();
      let firstOpMs = 0;
      const results = await Promise.all(
        vs.map((v) =>
          limit(async () => {
            const st = pool.get(`${sshd.urlPrefix}/${v.dir}`);
            const found = await st.list(`${v.name}-r*.yaml`);
            if (!firstOpMs) firstOpMs = performance.now() - started;
            const revs = found.map((f) => Number(/-r(\d+)\.yaml$/.exec(f)?.[1] ?? -1));
            const newest = Math.max(...revs);
            const file = `${v.name}-r${newest}.yaml`;
            const into = join(local, `run${round}`, v.name);
            await st.retrieve(into, [file], { checksum: true });
            const text = await readFile(join(into, file), 'utf8');
            return newest === v.newest && text.startsWith(`name: ${v.name}-r${newest}\n`);
          }),
        ),
      );
      const wallMs = performance.now() - started;
      const used = process.cpuUsage(cpu);
      const connections = pool.stats().sshConnections;
      await pool.close();
      return {
        wallMs,
        cpuMs: (used.user + used.system) / 1000,
        firstOpMs,
        connections,
        accepted: sshd.acceptedConnections() - before,
        correct: results.filter(Boolean).length,
      };
    };

    console.log(
      `variants: ${count}, parallel ${parallel}, ${repeat} run(s), load average ${loadavg()[0]!.toFixed(2)}`,
    );
    const runs: Run[] = [];
    for (let i = 0; i < repeat; i++) {
      const r = await once(i);
      runs.push(r);
      console.log(
        `run ${i + 1}: wall ${(r.wallMs / 1000).toFixed(3)} s, ${(r.wallMs / count).toFixed(2)} ms/variant, ` +
          `cpu ${(r.cpuMs / 1000).toFixed(3)} s, first answer after ${r.firstOpMs.toFixed(0)} ms, ` +
          `ssh connections ${r.connections} (sshd accepted ${r.accepted}), newest found ${r.correct}/${count}`,
      );
    }
    const median = [...runs].sort((a, b) => a.wallMs - b.wallMs)[Math.floor(runs.length / 2)]!;
    const met =
      runs.every((r) => r.connections === 1 && r.accepted === 1 && r.correct === count) &&
      median.wallMs < 2000;
    console.log(
      `median wall time: ${(median.wallMs / 1000).toFixed(3)} s; ssh connections per run: ${median.connections}`,
    );
    console.log(`target (1 connection, < 2 s): ${met ? 'met' : 'NOT met'}`);
    failed = !met;
  } finally {
    await sshd.stop();
    await rm(local, { recursive: true, force: true });
  }
  if (failed) process.exitCode = 1;
}

await main();
