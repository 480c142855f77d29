// The supply chain through the real ./build: the local step (a stand-in packer that copies a disk made from a
// REAL Alpine root) writes SBOMs, manifest and provenance beside the image; upload stores them, sign signs them,
// the metadata records them and the release catalog lists them. Release only on change: a --revise whose content
// equals the released revision's stores nothing new; one with a changed package set is released.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as openpgp from 'openpgp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import type { Catalog } from '../../src/release/index.js';
import { fakeBuilderIso, LOCAL_FIXTURES, makeTestKey, publishIso } from '../fixtures/local/mirror.js';
import { runBuild } from '../helpers/cli.js';
import { makeOverlay, RELEASES_URL } from '../helpers/overlay.js';
import { alpineMirror, ext4Disk, installedRoot, SKIP_NO_MIRROR } from '../helpers/supply-root.js';

const mirror = alpineMirror();
const tools = ['qemu-img', 'debugfs', 'sfdisk', 'mke2fs', 'qemu-system-x86_64'].filter(
  (t) => !['/usr/bin', '/usr/sbin', '/sbin', '/bin'].some((d) => existsSync(join(d, t))),
);
const skip = !mirror ? SKIP_NO_MIRROR : tools.length ? `missing ${tools.join(', ')}` : undefined;
if (skip) console.warn(`skipping the supply-chain pipeline test: ${skip}`);

const PACKAGES = ['alpine-base', 'openssh', 'chrony', 'e2fsprogs', 'tiny-cloud-nocloud'];

const sha256 = async (p: string) =>
  createHash('sha256')
    .update(await readFile(p))
    .digest('hex');

describe.skipIf(skip)('supply chain through ./build (stand-in packer, real Alpine root)', () => {
  let base: string;
  let work: string;
  let storage: string;
  let diskA: string;
  let diskB: string;
  let env: NodeJS.ProcessEnv;
  let args: (...extra: string[]) => string[];
  let catalogDir: string;
  const name = (r: number) => `nocloud_alpine-3.24.1-x86_64-bios-tiny-r${r}`;
  const dir = () => join(storage, 'v3.24', 'nocloud', 'x86_64');

  beforeAll(async () => {
    base = await mkdtemp(join(tmpdir(), 'cib-supply-pipe-'));
    diskA = join(base, 'a.raw');
    diskB = join(base, 'b.raw');
    ext4Disk(installedRoot(mirror!, PACKAGES), diskA);
    ext4Disk(installedRoot(mirror!, [...PACKAGES, 'doas']), diskB);
    const key = await makeTestKey();
    const iso = join(base, 'fake.iso');
    await fakeBuilderIso(iso);
    const { cdnUrl } = await publishIso(join(base, 'cdn'), iso, {
      version: '3.24',
      release: '3.24.1',
      arch: 'x86_64',
      key,
    });
    const signing = await openpgp.generateKey({
      type: 'ecc',
      userIDs: [{ name: 'Supply Test', email: 'supply@example.org' }],
      format: 'armored',
    });
    const signingKey = join(base, 'signing.asc');
    await writeFile(signingKey, signing.privateKey);
    storage = join(base, 'storage');
    catalogDir = join(base, 'catalog');
    const overlay = await makeOverlay({
      storageUrl: `file://${storage}/{v_version}/{cloud}/{arch}`,
      clouds: ['nocloud'],
      firmwares: ['bios'],
      parent: base,
      // the stand-in packer is the VM builder's
      defaults: { signing_key: signingKey, catalog_dir: catalogDir, builder: 'vm' },
    });
    await mkdir(join(overlay, 'keys'), { recursive: true });
    await writeFile(join(overlay, 'keys', 'test-release.asc'), key.publicArmored);
    const vars = join(base, 'tcg.pkrvars.hcl');
    await writeFile(vars, 'accelerator = "tcg"\n');
    const bin = join(base, 'bin');
    await mkdir(bin);
    await symlink(join(LOCAL_FIXTURES, 'fake-packer'), join(bin, 'packer'));
    env = { PATH: `${bin}:${process.env.PATH}` };
    work = join(base, 'work');
    args = (...extra) => [
      '--work-dir',
      work,
      '--custom',
      overlay,
      '--releases-url',
      RELEASES_URL,
      '--cdn-url',
      cdnUrl,
      '--vars',
      vars,
      // fake-packer's images cannot boot: the boot test (the test step) is not what this test is about
      '--disable',
      'test',
      ...extra,
    ];
  }, 180_000);

  afterAll(async () => {
    await rm(base, { recursive: true, force: true });
  });

  it('writes, stores, signs, records and lists the SBOMs, manifest and provenance of a release', async () => {
    const r = await runBuild(['release', ...args()], {
      env: { ...env, FAKE_PACKER_DISK: diskA },
      timeoutMs: 300_000,
    });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const n = name(0);
    const files = await readdir(dir());
    for (const f of [`${n}.qcow2`, `${n}.spdx.json`, `${n}.cdx.json`, `${n}.manifest`, `${n}.intoto.jsonl`]) {
      for (const suffix of ['', '.sha512', '.asc']) expect(files).toContain(`${f}${suffix}`);
    }
    const meta = parse(await readFile(join(dir(), `${n}.yaml`), 'utf8'));
    expect(meta.released).toBeTruthy();
    expect(meta.supply).toMatchObject({
      content_digest: expect.stringMatching(/^sha256:[0-9a-f]{64}$/),
      files: {
        spdx: `${n}.spdx.json`,
        cyclonedx: `${n}.cdx.json`,
        manifest: `${n}.manifest`,
        provenance: `${n}.intoto.jsonl`,
      },
    });
    expect(meta.supply.packages).toBeGreaterThan(50);
    // the content digest is the stored manifest's sha256
    expect(meta.supply.content_digest).toBe(`sha256:${await sha256(join(dir(), `${n}.manifest`))}`);
    // the SBOM lists the packages of the image
    const spdx = JSON.parse(await readFile(join(dir(), `${n}.spdx.json`), 'utf8'));
    expect(spdx.packages).toHaveLength(meta.supply.packages + 1);
    // provenance subjects are the stored files, with their sha256
    const lines = (await readFile(join(dir(), `${n}.intoto.jsonl`), 'utf8')).trim().split('\n');
    expect(lines).toHaveLength(1);
    const st = JSON.parse(lines[0]!);
    expect(st.subject.map((s: { name: string }) => s.name).sort()).toEqual(
      [`${n}.qcow2`, `${n}.spdx.json`, `${n}.cdx.json`, `${n}.manifest`].sort(),
    );
    for (const s of st.subject) expect(s.digest.sha256).toBe(await sha256(join(dir(), s.name)));
    expect(st.predicate.buildDefinition.externalParameters.variant).toBe('3.24-x86_64-bios-tiny-vm-nocloud');
    expect(st.predicate.buildDefinition.resolvedDependencies[0].uri).toMatch(
      /alpine-virt-3\.24\.1-x86_64\.iso$/,
    );
    // the catalog lists them
    const catalog: Catalog = JSON.parse(await readFile(join(catalogDir, 'catalog.json'), 'utf8'));
    const e = catalog.images[0]!;
    expect(e.supply?.content_digest).toBe(meta.supply.content_digest);
    expect(e.supply?.files.map((f) => f.kind).sort()).toEqual([
      'cyclonedx',
      'manifest',
      'provenance',
      'spdx',
    ]);
    expect(e.supply?.files.find((f) => f.kind === 'spdx')?.signature_url).toBe(
      `https://example.test/v3.24/nocloud/x86_64/${n}.spdx.json.asc`,
    );
  }, 300_000);

  it('verify passes on the untouched image and names the file a one-byte change in the stored image touched', async () => {
    const ok = await runBuild(['verify', ...args()], {
      env: { ...env, FAKE_PACKER_DISK: diskA },
      timeoutMs: 300_000,
    });
    expect(ok.code, ok.stdout + ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(new RegExp(`${name(0)}\\s+match: content sha256:[0-9a-f]{64}, bit-identical`));
    expect(ok.stdout).toContain('verify: all 1 image(s) match storage');

    // the stored image replaced by one whose tree differs in one byte of /etc/motd (checksum file and all)
    const n = name(0);
    const stored = join(dir(), `${n}.qcow2`);
    const original = join(base, 'original.qcow2');
    await rename(stored, original);
    const tree = join(base, 'tampered-root');
    execFileSync('cp', ['-a', installedRoot(mirror!, PACKAGES), tree]);
    const motd = join(tree, 'etc/motd');
    const bytes = await readFile(motd);
    bytes[0] = bytes[0]! ^ 1;
    await writeFile(motd, bytes);
    const raw = join(base, 'tampered.raw');
    ext4Disk(tree, raw);
    execFileSync('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', raw, stored]);
    await writeFile(
      `${stored}.sha512`,
      `${createHash('sha512')
        .update(await readFile(stored))
        .digest('hex')}  ${n}.qcow2\n`,
    );
    try {
      const bad = await runBuild(['verify', ...args()], {
        env: { ...env, FAKE_PACKER_DISK: diskA },
        timeoutMs: 300_000,
      });
      expect(bad.code, bad.stdout + bad.stderr).toBe(1);
      expect(bad.stdout).toContain(`${n}  DIFFERS: changed /etc/motd (sha256)`);
      expect(bad.stdout).toContain('verify: 1 of 1 image(s) do not match storage');
    } finally {
      await rename(original, stored);
      await writeFile(
        `${stored}.sha512`,
        `${createHash('sha512')
          .update(await readFile(stored))
          .digest('hex')}  ${n}.qcow2\n`,
      );
    }
  }, 600_000);

  it('a --revise with the same content stores nothing new; the plan says why; a changed package set is released', async () => {
    const same = await runBuild(['release', '--revise', ...args()], {
      env: { ...env, FAKE_PACKER_DISK: diskA },
      timeoutMs: 300_000,
    });
    expect(same.code, same.stdout + same.stderr).toBe(0);
    expect(same.stdout).toContain(
      `${name(1)}: unchanged (same content as r0); not uploaded, imported or published`,
    );
    expect((await readdir(dir())).filter((f) => f.includes('-r1.'))).toEqual([]);

    const state = await runBuild(['state', ...args()], { env });
    expect(state.code, state.stderr).toBe(0);
    expect(state.stdout).toMatch(new RegExp(`${name(1)}\\s+nocloud\\s+unchanged \\(same content as r0\\)`));

    const changed = await runBuild(['release', '--revise', ...args()], {
      env: { ...env, FAKE_PACKER_DISK: diskB },
      timeoutMs: 300_000,
    });
    expect(changed.code, changed.stdout + changed.stderr).toBe(0);
    expect(changed.stdout).not.toContain('unchanged');
    const meta1 = parse(await readFile(join(dir(), `${name(1)}.yaml`), 'utf8'));
    const meta0 = parse(await readFile(join(dir(), `${name(0)}.yaml`), 'utf8'));
    expect(meta1.released).toBeTruthy();
    expect(meta1.supply.content_digest).not.toBe(meta0.supply.content_digest);
    expect(meta1.supply.packages).toBe(meta0.supply.packages + 1);
    expect(meta1.supply.unchanged_as ?? null).toBeNull();
    expect(meta1.supply.baseline).toEqual({ revision: 0, content_digest: meta0.supply.content_digest });
  }, 600_000);
});
