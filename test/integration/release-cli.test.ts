/**
 * sign, release (with release_cmd and catalog_dir), catalog and prune through the real ./build, on a nocloud
 * variant resolved from a --custom overlay, with file:// storage and a fake local build.
 */
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import * as openpgp from 'openpgp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import type { ImageConfig } from '../../src/config/types.js';
import type { Catalog } from '../../src/release/index.js';
import type { Image } from '../../src/state/image.js';
import { runBuild } from '../helpers/cli.js';
import { fakeLocalBuild, makeOverlay, RELEASES_URL, readImages } from '../helpers/overlay.js';
import { storeRevision, treeFiles } from '../unit/release-fixtures.js';

const PASSPHRASE = 'cli-test-passphrase-5d2e';

let root: string;
let keyFile: string;
let fingerprint: string;
let script: string;
const overlays: string[] = [];

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'release-cli-'));
  const made = await openpgp.generateKey({
    type: 'ecc',
    userIDs: [{ name: 'CLI Test', email: 'cli@example.org' }],
    passphrase: PASSPHRASE,
    format: 'armored',
  });
  keyFile = join(root, 'signing-key.asc');
  await writeFile(keyFile, made.privateKey);
  fingerprint = (await openpgp.readKey({ armoredKey: made.publicKey })).getFingerprint().toUpperCase();
  script = join(root, 'release-image');
  await writeFile(
    script,
    [
      '#!/bin/sh',
      'printf "%s\\n" "$@" > "$ARGS_OUT"',
      '[ "$1" = fail ] && { echo "mirror refused" >&2; exit 4; }',
      'exit 0',
      '',
    ].join('\n'),
  );
  await chmod(script, 0o755);
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
  for (const o of overlays) await rm(o, { recursive: true, force: true });
});

async function prepared(name: string, defaults: Record<string, unknown>) {
  const storage = join(root, name, 'storage');
  const overlay = await makeOverlay({
    storageUrl: `file://${storage}/{v_version}/{cloud}/{arch}`,
    clouds: ['nocloud'],
    defaults,
  });
  overlays.push(overlay);
  const work = join(root, name, 'work');
  const args = (...extra: string[]) => [
    '--work-dir',
    work,
    '--custom',
    overlay,
    '--releases-url',
    RELEASES_URL,
    ...extra,
  ];
  const r = await runBuild(['configs', ...args()]);
  expect(r.code, r.stderr).toBe(0);
  const config: ImageConfig = Object.values(await readImages(work))[0]!;
  const image: Image = await fakeLocalBuild(config, work);
  const dir = join(storage, image.vVersion, config.cloud, config.arch);
  return { work, storage, config, image, dir, args };
}

describe('release through the CLI', () => {
  it('signs with signing_key, runs release_cmd, records both in metadata and writes the catalog to catalog_dir', async () => {
    const catalogDir = join(root, 'ok', 'catalog');
    const argsOut = join(root, 'ok-args.txt');
    const { storage, config, image, dir, args } = await prepared('ok', {
      signing_key: keyFile,
      signing_passphrase_env: 'CIB_TEST_SIGN_PW',
      release_cmd: `${script} {v_version} {cloud} {arch} {base}`,
      catalog_dir: catalogDir,
    });
    const r = await runBuild(['release', ...args()], {
      env: { CIB_TEST_SIGN_PW: PASSPHRASE, ARGS_OUT: argsOut },
    });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout + r.stderr).not.toContain(PASSPHRASE);

    // stored: image, checksum, signature, metadata
    const asc = await readFile(join(dir, `${image.uploadFile}.asc`), 'utf8');
    expect(asc).toContain('BEGIN PGP SIGNATURE');
    const meta = parse(await readFile(join(dir, image.metadataFile), 'utf8'));
    expect(meta.signing_key_fingerprint).toBe(fingerprint);
    expect(meta.signed).toMatch(/^\d{4}-\d\d-\d\dT/);
    expect(meta.released).toMatch(/^\d{4}-\d\d-\d\dT/);

    expect((await readFile(argsOut, 'utf8')).trim().split('\n')).toEqual([
      image.vVersion,
      'nocloud',
      config.arch,
      image.imageName,
    ]);

    const catalog: Catalog = JSON.parse(await readFile(join(catalogDir, 'catalog.json'), 'utf8'));
    expect(catalog.images).toHaveLength(1);
    const e = catalog.images[0]!;
    expect(e).toMatchObject({
      name: image.imageName,
      revision: 0,
      cloud: 'nocloud',
      file: image.uploadFile,
      signing_key_fingerprint: fingerprint,
      released: meta.released,
    });
    expect(e.signature_url).toBe(`${e.download_url}.asc`);
    expect(e.checksum?.sha512).toBe((await readFile(join(dir, `${image.uploadFile}.sha512`), 'utf8')).trim());
    expect(catalog.latest[`stable/${config.arch}/uefi/tiny/vm/nocloud`]?.name).toBe(image.imageName);
    const site = parse(await readFile(join(catalogDir, 'releases.yaml'), 'utf8'));
    expect(site.versions[0].images[0].downloads[0].image_name).toBe(image.imageName);

    // nothing left to do, and not signed again
    const again = await runBuild(['release', ...args()], {
      env: { CIB_TEST_SIGN_PW: PASSPHRASE, ARGS_OUT: argsOut },
    });
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toContain('nothing to do');
    expect(await readFile(join(dir, `${image.uploadFile}.asc`), 'utf8')).toBe(asc);

    // ./build catalog --output
    const out = join(root, 'ok', 'catalog-out');
    const cat = await runBuild(['catalog', ...args('--output', out)]);
    expect(cat.code, cat.stderr).toBe(0);
    expect(cat.stdout).toContain(join(out, 'catalog.json'));
    expect(cat.stdout).toContain(join(out, 'releases.yaml'));
    expect(JSON.parse(await readFile(join(out, 'catalog.json'), 'utf8')).images).toEqual(catalog.images);
    // --only/--skip select variants for catalog as for every step: here they leave none, which is an error
    const skipped = await runBuild(['catalog', ...args('--skip', config.arch)]);
    expect(skipped.code).toBe(2);
    expect(skipped.stderr).toMatch(/--skip x86_64: together these select no variant/);

    // ./build prune: with later revisions in storage, r0 is an old revision and r2 an unreleased leftover
    await storeRevision(config, 1, { released: '2030-01-01T00:00:00Z' });
    const r2 = await storeRevision(config, 2, {});
    await storeRevision(config, 3, {});
    const r0Files = [
      image.uploadFile,
      `${image.uploadFile}.sha512`,
      `${image.uploadFile}.asc`,
      image.metadataFile,
      `${image.metadataFile}.sha512`,
    ];
    const before = await treeFiles(storage);
    const dry = await runBuild(['prune', ...args()]);
    expect(dry.code, dry.stderr).toBe(0);
    const lines = dry.stdout.split('\n').filter((l) => l.startsWith('storage\t'));
    expect(lines).toHaveLength(2);
    expect(dry.stdout).toMatch(/^total: .*\(dry run: use --really to remove\)$/m);
    expect(dry.stdout).toContain(`${image.imageName}.* (5 files)`);
    expect(dry.stdout).toMatch(/old-revision/);
    expect(dry.stdout).toMatch(/unreleased/);
    expect(await treeFiles(storage)).toEqual(before);
    // --json, on storage alone (no cloud listed), saying what it checks; --only narrows it like other steps
    const js = await runBuild(['prune', ...args('--json', '--storage-only')]);
    expect(js.code, js.stderr).toBe(0);
    const pj = JSON.parse(js.stdout) as { schema: string; items: { where: string; reason: string }[] };
    expect(pj.schema).toBe('cloud-image-builder/prune/v1');
    expect(pj.items.map((i) => `${i.where} ${i.reason}`).sort()).toEqual([
      'storage old-revision',
      'storage unreleased',
    ]);
    expect(js.stderr).toMatch(
      /prune: checking storage of \d+ variant\(s\) .*not the clouds \(--storage-only\)/,
    );
    const none = await runBuild(['prune', ...args('--skip', 'uefi')]);
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/--skip uefi: together these select no variant/);
    const only = await runBuild(['prune', ...args('--only', 'uefi', 'nocloud')]);
    expect(only.code, only.stderr).toBe(0);
    expect(only.stdout.split('\n').filter((l) => l.startsWith('storage\t'))).toHaveLength(2);

    const really = await runBuild(['prune', ...args('--really')]);
    expect(really.code, really.stderr).toBe(0);
    const gone = [...r0Files, ...r2.files].map((f) => relative(storage, join(dir, f)));
    expect(await treeFiles(storage)).toEqual(before.filter((f) => !gone.includes(f)));
    // eight ./build runs: allow for a loaded machine (and a recompile when sources changed)
  }, 240_000);

  it('a failing release_cmd leaves the image unreleased and says which command failed and why', async () => {
    const argsOut = join(root, 'fail-args.txt');
    const { image, dir, args } = await prepared('fail', { release_cmd: `${script} fail {base}` });
    const r = await runBuild(['release', ...args()], { env: { ARGS_OUT: argsOut } });
    expect(r.code).not.toBe(0);
    const said = r.stdout + r.stderr;
    expect(said).toContain(`release_cmd for ${image.imageName} failed`);
    expect(said).toContain('exited with code 4');
    expect(said).toContain('mirror refused');
    const meta = parse(await readFile(join(dir, image.metadataFile), 'utf8'));
    expect(meta.uploaded).toBeTruthy();
    expect(meta.released).toBeUndefined();
  }, 120_000);
});
