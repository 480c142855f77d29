// Reproducible disks: two chroot builds of one variant from the same inputs, in two work directories, give
// bit-identical raw disks (and the same SBOMs and manifest); the provenance names what went in and its subjects
// are the files beside the image; `./build verify` rebuilds the stored image in a temporary directory and finds it
// bit-identical. Real Alpine packages from the mirror, through the real ./build.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { describeDiff, diffManifests, parseManifest } from '../../src/supply/manifest.js';
import {
  type ChrootEnv,
  chrootUnavailable,
  localArgs,
  prepareChrootEnv,
  stepArgs,
} from '../helpers/alpine-image.js';
import { MIRROR_RELEASE } from '../helpers/alpine-standin.js';
import { runBuild } from '../helpers/cli.js';

const reason = await chrootUnavailable('x86_64', 'bios');
if (reason) console.warn(`skipping the reproducible-disk test: ${reason}`);

const ONLY = ['3.19', 'x86_64', 'bios', 'tiny', 'vm', 'nocloud'];
const NAME = `nocloud_alpine-${MIRROR_RELEASE}-x86_64-bios-tiny-r0`;
const DIR = join('images', 'nocloud', `${MIRROR_RELEASE}-x86_64-bios-tiny-vm-nocloud`);

async function sha256(path: string): Promise<string> {
  return createHash('sha256')
    .update(await readFile(path))
    .digest('hex');
}

/** sha256 of the raw disk inside a qcow2 */
function rawSha256(qcow2: string, scratch: string): string {
  const raw = join(scratch, `${createHash('sha1').update(qcow2).digest('hex')}.raw`);
  execFileSync('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', qcow2, raw]);
  const out = execFileSync('sha256sum', [raw], { encoding: 'utf8' }).split(' ')[0]!;
  execFileSync('rm', ['-f', raw]);
  return out;
}

describe.skipIf(reason)('reproducible chroot builds (real Alpine packages)', () => {
  let base: string;
  let env: ChrootEnv;
  const works: string[] = [];
  const runs: Awaited<ReturnType<typeof runBuild>>[] = [];

  beforeAll(async () => {
    base = join(tmpdir(), `cib-repro-${process.pid}`);
    env = await prepareChrootEnv(join(base, 'env'));
    // one after the other: the second build must not profit from anything of the first but the package cache
    // it would have anyway (work/apk-cache is per work directory here, so not even that)
    for (const n of ['one', 'two']) {
      const work = join(base, `work-${n}`);
      works.push(work);
      runs.push(await runBuild(localArgs(env, work, ONLY), { timeoutMs: 15 * 60_000 }));
    }
  }, 30 * 60_000);

  afterAll(async () => {
    await rm(base, { recursive: true, force: true });
  });

  it('builds bit-identical raw disks, SBOMs and manifests in two work directories', async () => {
    for (const r of runs) expect(r.code, r.stderr.slice(-3000)).toBe(0);
    const [a, b] = works.map((w) => join(w, DIR)) as [string, string];
    const [ma, mb] = await Promise.all([
      readFile(join(a, `${NAME}.manifest`), 'utf8'),
      readFile(join(b, `${NAME}.manifest`), 'utf8'),
    ]);
    // name the first differing files when they differ: the disk bytes cannot be the same then
    expect(describeDiff(diffManifests(parseManifest(ma), parseManifest(mb)))).toBe('no differences');
    expect(rawSha256(join(a, 'image.qcow2'), base)).toBe(rawSha256(join(b, 'image.qcow2'), base));
    expect(await sha256(join(a, `${NAME}.qcow2`))).toBe(await sha256(join(b, `${NAME}.qcow2`)));
    for (const f of [`${NAME}.spdx.json`, `${NAME}.cdx.json`]) {
      expect(await sha256(join(a, f)), f).toBe(await sha256(join(b, f)));
    }
  });

  it('records the supply chain in the metadata; the provenance names the minirootfs, packages and indexes', async () => {
    const dir = join(works[0]!, DIR);
    const meta = parse(await readFile(join(dir, `${NAME}.yaml`), 'utf8'));
    expect(meta.supply.content_digest).toBe(`sha256:${await sha256(join(dir, `${NAME}.manifest`))}`);
    const spdx = JSON.parse(await readFile(join(dir, `${NAME}.spdx.json`), 'utf8'));
    const names = spdx.packages.map((p: { name: string }) => p.name);
    for (const p of ['alpine-base', 'busybox', 'tiny-cloud-nocloud', 'openssh-server', 'linux-virt']) {
      expect(names).toContain(p);
    }
    expect(meta.supply.packages).toBe(names.length - 1);
    const st = JSON.parse((await readFile(join(dir, `${NAME}.intoto.jsonl`), 'utf8')).trim());
    for (const s of st.subject) expect(s.digest.sha256, s.name).toBe(await sha256(join(dir, s.name)));
    const deps = st.predicate.buildDefinition.resolvedDependencies as { uri?: string; name?: string }[];
    expect(deps[0]!.uri).toMatch(/alpine-minirootfs-3\.19\.\d+-x86_64\.tar\.gz$/);
    const indexes = deps.filter((d) => d.uri?.endsWith('/x86_64/APKINDEX.tar.gz'));
    expect(indexes.map((d) => d.uri)).toContain(
      'https://dl-cdn.alpinelinux.org/alpine/v3.19/main/x86_64/APKINDEX.tar.gz',
    );
    expect(deps.filter((d) => d.uri?.startsWith('pkg:apk/alpine/'))).toHaveLength(meta.supply.packages);
    expect(st.predicate.buildDefinition.externalParameters.variant).toBe('3.19-x86_64-bios-tiny-vm-nocloud');
  });

  it(
    'verify: the stored image is rebuilt bit-identical by the chroot builder in a temporary work directory',
    async () => {
      // the overlay's storage_url is file://{work_dir}/storage/…; the boot test is not what this test is about
      const args = (step: string) => stepArgs(step, env, works[0]!, ONLY, ['--disable', 'test']);
      const up = await runBuild(args('upload'), { timeoutMs: 5 * 60_000 });
      expect(up.code, up.stderr.slice(-3000)).toBe(0);
      const v = await runBuild(args('verify'), { timeoutMs: 10 * 60_000 });
      expect(v.code, v.stdout + v.stderr.slice(-3000)).toBe(0);
      expect(v.stdout).toMatch(new RegExp(`${NAME}\\s+match: content sha256:[0-9a-f]{64}, bit-identical`));
      expect(v.stdout).toContain('verify: all 1 image(s) match storage');
    },
    15 * 60_000,
  );
});
