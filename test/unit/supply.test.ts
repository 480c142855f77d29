// SBOMs, manifest and provenance from a REAL Alpine root (the mirror's minirootfs apk installing real signed
// packages), validated against the official SPDX 2.3 and CycloneDX 1.6 JSON schemas.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Spec, Validation } from '@cyclonedx/cyclonedx-library';
import { Ajv } from 'ajv';
import addFormats from 'ajv-formats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apkPurl, parseInstalledDb, resolveDependencies } from '../../src/supply/apkdb.js';
import { readDisk } from '../../src/supply/disk.js';
import { apkLicense } from '../../src/supply/license.js';
import { describeDiff, diffManifests, manifestFromTree, parseManifest } from '../../src/supply/manifest.js';
import { buildProvenance, SLSA_PROVENANCE_V1, STATEMENT_TYPE } from '../../src/supply/provenance.js';
import { buildCycloneDx, buildSpdx, serializeCycloneDx, serializeSpdx } from '../../src/supply/sbom.js';
import { ROOT } from '../helpers/cli.js';
import { alpineMirror, ext4Disk, installedRoot, minirootfs, SKIP_NO_MIRROR } from '../helpers/supply-root.js';

const mirror = alpineMirror();
const PACKAGES = ['alpine-base', 'openssh', 'chrony', 'e2fsprogs', 'tiny-cloud-nocloud'];
const SPDX_SCHEMA = join(ROOT, 'test/fixtures/schemas/spdx-2.3.schema.json');
const SPDX_SCHEMA_SHA256 = '239208b7ac287b3cf5d9a9af23f9d69863971102a5e1587a27a398b43490b89b';

describe('apk license field -> SPDX expression', () => {
  it('keeps valid expressions and turns unknown ids into LicenseRefs', () => {
    expect(apkLicense('GPL-2.0-or-later AND MIT')).toMatchObject({ expression: 'GPL-2.0-or-later AND MIT' });
    expect(apkLicense('ISC AND ( BSD-3-Clause OR MIT )').expression).toBe('ISC AND ( BSD-3-Clause OR MIT )');
    expect(apkLicense('GPL-3.0-or-later WITH OpenSSL-Exception').expression).toBe(
      'GPL-3.0-or-later WITH OpenSSL-Exception',
    );
    const pd = apkLicense('MIT AND Public-Domain');
    expect(pd.expression).toBe('MIT AND LicenseRef-Public-Domain');
    expect([...pd.refs]).toEqual([['LicenseRef-Public-Domain', 'Public-Domain']]);
    // a space-separated list is not an expression: one LicenseRef for the whole text
    expect(apkLicense('GPL-2.0 MIT').expression).toBe('LicenseRef-GPL-2.0-MIT');
    expect(apkLicense(undefined).expression).toBeUndefined();
  });
});

describe.skipIf(!mirror)(
  `supply chain documents of a real Alpine root${mirror ? '' : ` (skipped: ${SKIP_NO_MIRROR})`}`,
  () => {
    let root: string;
    let work: string;
    let dbText: string;
    beforeAll(() => {
      root = installedRoot(mirror!, PACKAGES);
      dbText = readFileSync(join(root, 'lib/apk/db/installed'), 'utf8');
      work = mkdtempSync(join(tmpdir(), 'cib-supply-test-'));
    });
    afterAll(() => rmSync(work, { recursive: true, force: true }));

    const subject = () => ({
      name: 'alpine-3.19.1-x86_64-bios-tiny-r0',
      version: '3.19.1-r0',
      release: '3.19.1',
      arch: 'x86_64',
      file: {
        name: 'alpine-3.19.1-x86_64-bios-tiny-r0.qcow2',
        sha256: 'a'.repeat(64),
        sha512: 'b'.repeat(128),
      },
      contentDigest: `sha256:${'c'.repeat(64)}`,
      supplier: 'Alpine Linux',
    });
    const tool = { name: 'cloud-image-builder', version: '0.1.0' };

    it('parses the installed database exactly as apk itself lists it', () => {
      const pkgs = parseInstalledDb(dbText);
      const mini = minirootfs(mirror!);
      const listed = execFileSync(
        join(mini, 'lib/ld-musl-x86_64.so.1'),
        [
          '--library-path',
          `${join(mini, 'lib')}:${join(mini, 'usr/lib')}`,
          join(mini, 'sbin/apk'),
          '--root',
          root,
          'info',
          '-v',
        ],
        { encoding: 'utf8' },
      )
        .split('\n')
        .filter(Boolean)
        .sort();
      expect(pkgs.map((p) => `${p.name}-${p.version}`).sort()).toEqual(listed);
      expect(pkgs.length).toBeGreaterThan(50);
      const busybox = pkgs.find((p) => p.name === 'busybox')!;
      expect(busybox).toMatchObject({ arch: 'x86_64', origin: 'busybox', license: 'GPL-2.0-only' });
      expect(busybox.checksum).toMatch(/^Q1[A-Za-z0-9+/]{27}=$/);
      expect(busybox.files).toContain('bin/busybox');
      // dependencies resolve through provides (so:) and file owners (/bin/sh)
      const deps = resolveDependencies(pkgs);
      expect(deps.get('busybox')).toContain('musl');
      expect(deps.get('alpine-baselayout')).toContain('busybox-binsh');
      expect(deps.get('openssh-server')).toEqual(
        expect.arrayContaining(['libcrypto3', 'openssh-server-common']),
      );
    });

    it('writes an SPDX 2.3 document that lists every installed package and passes the official schema', () => {
      const schemaText = readFileSync(SPDX_SCHEMA);
      expect(createHash('sha256').update(schemaText).digest('hex')).toBe(SPDX_SCHEMA_SHA256);
      const ajv = new Ajv({ strict: false, allErrors: true });
      addFormats.default(ajv);
      const validate = ajv.compile(JSON.parse(schemaText.toString('utf8')));
      const pkgs = parseInstalledDb(dbText);
      const doc = JSON.parse(
        serializeSpdx(
          buildSpdx({ subject: subject(), packages: pkgs, created: new Date('2024-01-26T00:00:00Z'), tool }),
        ),
      );
      expect(validate(doc), JSON.stringify(validate.errors?.slice(0, 5))).toBe(true);
      const listed = doc.packages.filter((p: { SPDXID: string }) => p.SPDXID !== 'SPDXRef-Image');
      expect(
        listed.map((p: { name: string; versionInfo: string }) => `${p.name}@${p.versionInfo}`).sort(),
      ).toEqual(pkgs.map((p) => `${p.name}@${p.version}`).sort());
      const bb = listed.find((p: { name: string }) => p.name === 'busybox');
      const want = pkgs.find((p) => p.name === 'busybox')!;
      expect(bb.externalRefs[0].referenceLocator).toBe(
        `pkg:apk/alpine/busybox@${want.version}?arch=x86_64&distro=alpine-3.19.1`,
      );
      expect(bb.checksums[0]).toEqual({
        algorithm: 'SHA1',
        checksumValue: Buffer.from(want.checksum.slice(2), 'base64').toString('hex'),
      });
      expect(bb.licenseDeclared).toBe('GPL-2.0-only');
      expect(bb.supplier).toMatch(/^Person: .+ \(.+@.+\)$/);
      expect(bb.sourceInfo).toContain('origin busybox');
      // every LicenseRef used is declared
      const declared = new Set(
        (doc.hasExtractedLicensingInfos ?? []).map((l: { licenseId: string }) => l.licenseId),
      );
      for (const p of listed) {
        for (const ref of String(p.licenseDeclared).match(/LicenseRef-[A-Za-z0-9.-]+/g) ?? [])
          expect(declared).toContain(ref);
      }
      const rel = doc.relationships as {
        spdxElementId: string;
        relationshipType: string;
        relatedSpdxElement: string;
      }[];
      expect(rel.filter((r) => r.relationshipType === 'CONTAINS')).toHaveLength(pkgs.length);
      expect(rel).toContainEqual({
        spdxElementId: 'SPDXRef-DOCUMENT',
        relationshipType: 'DESCRIBES',
        relatedSpdxElement: 'SPDXRef-Image',
      });
      expect(
        rel.some(
          (r) => r.relationshipType === 'DEPENDS_ON' && r.spdxElementId === 'SPDXRef-Package-apk-busybox',
        ),
      ).toBe(true);
      // same input, same bytes
      expect(
        serializeSpdx(
          buildSpdx({
            subject: subject(),
            packages: [...pkgs].reverse(),
            created: new Date('2024-01-26T00:00:00Z'),
            tool,
          }),
        ),
      ).toBe(`${JSON.stringify(doc, null, 2)}\n`);
    });

    it('writes a CycloneDX 1.6 document that lists every installed package and passes the official schema', async () => {
      const pkgs = parseInstalledDb(dbText);
      const text = serializeCycloneDx(
        buildCycloneDx({
          subject: subject(),
          packages: pkgs,
          created: new Date('2024-01-26T00:00:00Z'),
          tool,
        }),
      );
      const err = await new Validation.JsonStrictValidator(Spec.Version.v1dot6).validate(text);
      expect(err).toBeNull();
      const bom = JSON.parse(text);
      expect(bom.specVersion).toBe('1.6');
      expect(bom.metadata.component).toMatchObject({
        type: 'operating-system',
        name: subject().name,
        version: '3.19.1-r0',
      });
      expect(
        bom.components.map((c: { name: string; version: string }) => `${c.name}@${c.version}`).sort(),
      ).toEqual(pkgs.map((p) => `${p.name}@${p.version}`).sort());
      const openssh = bom.components.find((c: { name: string }) => c.name === 'openssh-server');
      const want = pkgs.find((p) => p.name === 'openssh-server')!;
      expect(openssh.purl).toBe(apkPurl(want, '3.19.1'));
      expect(openssh.hashes).toEqual([
        { alg: 'SHA-1', content: Buffer.from(want.checksum.slice(2), 'base64').toString('hex') },
      ]);
      expect(openssh.supplier.name).toBeTruthy();
      expect(openssh.properties).toEqual(
        expect.arrayContaining([{ name: 'cib:apk:origin', value: 'openssh' }]),
      );
      const dep = bom.dependencies.find((d: { ref: string }) => d.ref === openssh['bom-ref']);
      expect(dep.dependsOn).toEqual(
        expect.arrayContaining([apkPurl(pkgs.find((p) => p.name === 'libcrypto3')!, '3.19.1')]),
      );
      const image = bom.dependencies.find(
        (d: { ref: string }) => d.ref === bom.metadata.component['bom-ref'],
      );
      expect(image.dependsOn).toHaveLength(pkgs.length);
    });

    it('gives the same manifest from the tree and from the ext4 disk (raw and qcow2), and names a one-byte change', async () => {
      const fromTree = await manifestFromTree(root);
      expect(fromTree.entries[0]).toMatchObject({ path: '/', type: 'dir' });
      const bb = fromTree.entries.find((e) => e.path === '/bin/bbsuid')!;
      expect(bb).toMatchObject({ type: 'file', mode: 0o4111, uid: 0, gid: 0 });
      expect(fromTree.entries.find((e) => e.path === '/bin/sh')).toMatchObject({
        type: 'symlink',
        target: '/bin/busybox',
      });
      expect(parseManifest(fromTree.text).entries).toEqual(fromTree.entries);

      const raw = join(work, 'disk.raw');
      ext4Disk(root, raw);
      const qcow = join(work, 'disk.qcow2');
      execFileSync('qemu-img', ['convert', '-O', 'qcow2', raw, qcow]);
      const fromRaw = await readDisk(raw);
      const fromQcow = await readDisk(qcow);
      expect(describeDiff(diffManifests(fromTree, fromRaw.manifest))).toBe('no differences');
      expect(fromRaw.manifest.digest).toBe(fromTree.digest);
      expect(fromQcow.manifest.digest).toBe(fromTree.digest);
      expect(fromQcow.installedDb).toBe(dbText);

      // one byte changed in the tree: the manifest names that file, and only that one
      const copy = join(work, 'copy');
      execFileSync('cp', ['-a', root, copy]);
      const motd = join(copy, 'etc/motd');
      const bytes = readFileSync(motd);
      bytes[0] = bytes[0]! ^ 1;
      writeFileSync(motd, bytes);
      const changed = await manifestFromTree(copy);
      expect(changed.digest).not.toBe(fromTree.digest);
      const d = diffManifests(fromTree, changed);
      expect(d.changed).toEqual([{ path: '/etc/motd', fields: ['sha256'] }]);
      expect(describeDiff(d)).toBe('changed /etc/motd (sha256)');
    });

    it('writes an in-toto v1 statement with a SLSA provenance v1 predicate', () => {
      const pkgs = parseInstalledDb(dbText);
      const s = buildProvenance({
        subjects: [
          { name: 'x.qcow2', sha256: 'a'.repeat(64) },
          { name: 'x.spdx.json', sha256: 'b'.repeat(64) },
        ],
        variant: { config_key: '3.19-x86_64-bios-tiny-nocloud', image_key: 'k', name: 'x', revision: 0 },
        configs: { 'alpine.yaml': 'c'.repeat(64) },
        overlays: [],
        inputs: [
          { uri: 'file:///m/alpine-minirootfs-3.19.4-x86_64.tar.gz', digest: { sha256: 'd'.repeat(64) } },
        ],
        packages: pkgs,
        release: '3.19.1',
        contentDigest: `sha256:${'e'.repeat(64)}`,
        tool: { ...tool, commit: 'f'.repeat(40) },
        started: new Date('2024-01-01T00:00:00Z'),
        finished: new Date('2024-01-01T00:00:05Z'),
      });
      expect(s._type).toBe(STATEMENT_TYPE);
      expect(s.predicateType).toBe(SLSA_PROVENANCE_V1);
      expect(s.subject.map((x) => x.name)).toEqual(['x.qcow2', 'x.spdx.json']);
      const deps = s.predicate.buildDefinition.resolvedDependencies;
      expect(deps).toHaveLength(pkgs.length + 1);
      expect(
        deps
          .filter((d) => d.uri?.startsWith('pkg:apk/alpine/'))
          .every((d) => /^[0-9a-f]{40}$/.test(d.digest.sha1 ?? '')),
      ).toBe(true);
      expect(s.predicate.runDetails.builder.version).toMatchObject({ commit: 'f'.repeat(40) });
      expect(s.predicate.runDetails.metadata).toMatchObject({
        startedOn: '2024-01-01T00:00:00.000Z',
        finishedOn: '2024-01-01T00:00:05.000Z',
      });
    });
  },
);
