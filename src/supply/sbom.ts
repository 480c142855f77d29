// SBOMs of one image, from the installed-package database of its root filesystem: SPDX 2.3 JSON and
// CycloneDX 1.6 JSON. Both are deterministic for the same packages, subject and creation time (sorted lists,
// ids derived from content), so two builds of the same content give the same documents.
import { createHash } from 'node:crypto';
import { Enums, Models, Serialize, Spec } from '@cyclonedx/cyclonedx-library';
import { type ApkPackage, apkPurl, checksumHex, resolveDependencies, splitMaintainer } from './apkdb.js';
import { apkLicense } from './license.js';

/** What the SBOM describes: the image. */
export interface SbomSubject {
  /** image name, e.g. "alpine-3.19.1-x86_64-bios-tiny-r0" */
  name: string;
  /** image version, e.g. "3.19.1-r0" */
  version: string;
  /** Alpine release the packages come from (purl distro qualifier), e.g. "3.19.1" */
  release: string;
  arch: string;
  /** the image file as stored, with its digests */
  file?: { name: string; sha256: string; sha512?: string };
  /** the root filesystem's content digest ("sha256:<hex>") */
  contentDigest?: string;
  /** who publishes the image (config `project`) */
  supplier?: string;
}

export interface SbomTool {
  name: string;
  version: string;
}

export interface SbomInput {
  subject: SbomSubject;
  packages: readonly ApkPackage[];
  created: Date;
  tool: SbomTool;
}

/** A UUID (v4 layout, content-derived) so the same input always names the same document. */
export function contentUuid(...parts: string[]): string {
  const h = createHash('sha256').update(parts.join('\u0000')).digest();
  h[6] = (h[6]! & 0x0f) | 0x40;
  h[8] = (h[8]! & 0x3f) | 0x80;
  const x = h.subarray(0, 16).toString('hex');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20, 32)}`;
}

function sortedPackages(pkgs: readonly ApkPackage[]): ApkPackage[] {
  return [...pkgs].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** A fingerprint of the package set, for document ids. */
function packagesKey(pkgs: readonly ApkPackage[]): string {
  return sortedPackages(pkgs)
    .map((p) => `${p.name}@${p.version}:${p.arch}:${p.checksum}`)
    .join('\n');
}

function isoSeconds(d: Date): string {
  return `${d.toISOString().slice(0, 19)}Z`;
}

function spdxRef(kind: string, name: string): string {
  return `SPDXRef-${kind}-${name.replace(/[^A-Za-z0-9.]+/g, '-')}`;
}

// ---------------------------------------------------------------- SPDX 2.3

export interface SpdxDocument {
  spdxVersion: 'SPDX-2.3';
  dataLicense: 'CC0-1.0';
  SPDXID: 'SPDXRef-DOCUMENT';
  name: string;
  documentNamespace: string;
  creationInfo: { created: string; creators: string[]; comment?: string };
  packages: Record<string, unknown>[];
  relationships: { spdxElementId: string; relationshipType: string; relatedSpdxElement: string }[];
  hasExtractedLicensingInfos?: { licenseId: string; extractedText: string; name: string }[];
  documentDescribes: string[];
}

export function buildSpdx(input: SbomInput): SpdxDocument {
  const { subject, tool } = input;
  const pkgs = sortedPackages(input.packages);
  const deps = resolveDependencies(pkgs);
  const imageId = 'SPDXRef-Image';
  const ids = new Map(pkgs.map((p) => [p.name, spdxRef('Package-apk', p.name)]));
  const refs = new Map<string, string>();
  const imageChecksums = subject.file
    ? [
        { algorithm: 'SHA256', checksumValue: subject.file.sha256 },
        ...(subject.file.sha512 ? [{ algorithm: 'SHA512', checksumValue: subject.file.sha512 }] : []),
      ]
    : [];
  const image: Record<string, unknown> = {
    SPDXID: imageId,
    name: subject.name,
    versionInfo: subject.version,
    ...(subject.supplier ? { supplier: `Organization: ${subject.supplier}` } : {}),
    downloadLocation: 'NOASSERTION',
    filesAnalyzed: false,
    ...(subject.file ? { packageFileName: subject.file.name } : {}),
    ...(imageChecksums.length ? { checksums: imageChecksums } : {}),
    licenseConcluded: 'NOASSERTION',
    licenseDeclared: 'NOASSERTION',
    copyrightText: 'NOASSERTION',
    primaryPackagePurpose: 'OPERATING_SYSTEM',
    description: `Alpine Linux ${subject.release} ${subject.arch} cloud image`,
    ...(subject.contentDigest ? { comment: `root filesystem content digest ${subject.contentDigest}` } : {}),
  };
  const packages = pkgs.map((p) => {
    const lic = apkLicense(p.license);
    for (const [id, text] of lic.refs) refs.set(id, text);
    const sum = checksumHex(p.checksum);
    const maint = splitMaintainer(p.maintainer);
    const purl = apkPurl(p, subject.release);
    return {
      SPDXID: ids.get(p.name)!,
      name: p.name,
      versionInfo: p.version,
      supplier: maint ? `Person: ${maint.name}${maint.email ? ` (${maint.email})` : ''}` : 'NOASSERTION',
      originator: 'Organization: Alpine Linux',
      downloadLocation: 'NOASSERTION',
      filesAnalyzed: false,
      ...(sum ? { checksums: [{ algorithm: sum.algorithm, checksumValue: sum.hex }] } : {}),
      ...(p.url ? { homepage: p.url } : {}),
      sourceInfo: `built from aports origin ${p.origin ?? p.name}${p.commit ? ` at commit ${p.commit}` : ''} for ${p.arch}`,
      licenseConcluded: 'NOASSERTION',
      licenseDeclared: lic.expression ?? 'NOASSERTION',
      copyrightText: 'NOASSERTION',
      ...(p.description ? { summary: p.description } : {}),
      ...(p.buildTime !== undefined ? { builtDate: isoSeconds(new Date(p.buildTime * 1000)) } : {}),
      primaryPackagePurpose: 'INSTALL',
      externalRefs: [{ referenceCategory: 'PACKAGE-MANAGER', referenceType: 'purl', referenceLocator: purl }],
    };
  });
  const relationships: SpdxDocument['relationships'] = [
    { spdxElementId: 'SPDXRef-DOCUMENT', relationshipType: 'DESCRIBES', relatedSpdxElement: imageId },
  ];
  for (const p of pkgs) {
    relationships.push({
      spdxElementId: imageId,
      relationshipType: 'CONTAINS',
      relatedSpdxElement: ids.get(p.name)!,
    });
  }
  for (const p of pkgs) {
    for (const d of deps.get(p.name) ?? []) {
      relationships.push({
        spdxElementId: ids.get(p.name)!,
        relationshipType: 'DEPENDS_ON',
        relatedSpdxElement: ids.get(d)!,
      });
    }
  }
  const uuid = contentUuid('spdx', subject.name, subject.file?.sha256 ?? '', packagesKey(pkgs));
  return {
    spdxVersion: 'SPDX-2.3',
    dataLicense: 'CC0-1.0',
    SPDXID: 'SPDXRef-DOCUMENT',
    name: subject.name,
    documentNamespace: `https://spdx.org/spdxdocs/${encodeURIComponent(subject.name)}-${uuid}`,
    creationInfo: {
      created: isoSeconds(input.created),
      creators: [
        `Tool: ${tool.name}-${tool.version}`,
        ...(subject.supplier ? [`Organization: ${subject.supplier}`] : []),
      ],
      comment: "Packages from the image root filesystem's /lib/apk/db/installed",
    },
    documentDescribes: [imageId],
    packages: [image, ...packages],
    relationships,
    ...(refs.size
      ? {
          hasExtractedLicensingInfos: [...refs.entries()]
            .sort(([a], [b]) => (a < b ? -1 : 1))
            .map(([licenseId, text]) => ({
              licenseId,
              name: text,
              extractedText: `The apk license field names "${text}", which is not on the SPDX license list.`,
            })),
        }
      : {}),
  };
}

// ---------------------------------------------------------------- CycloneDX 1.6

export function buildCycloneDx(input: SbomInput): Models.Bom {
  const { subject, tool } = input;
  const pkgs = sortedPackages(input.packages);
  const deps = resolveDependencies(pkgs);
  const imageRef = `image:${subject.name}`;
  const main = new Models.Component(Enums.ComponentType.OperatingSystem, subject.name, {
    bomRef: imageRef,
    version: subject.version,
    description: `Alpine Linux ${subject.release} ${subject.arch} cloud image`,
    ...(subject.supplier ? { supplier: new Models.OrganizationalEntity({ name: subject.supplier }) } : {}),
  });
  if (subject.file) {
    main.hashes.set(Enums.HashAlgorithm['SHA-256'], subject.file.sha256);
    if (subject.file.sha512) main.hashes.set(Enums.HashAlgorithm['SHA-512'], subject.file.sha512);
    main.properties.add(new Models.Property('cib:image:file', subject.file.name));
  }
  if (subject.contentDigest)
    main.properties.add(new Models.Property('cib:image:content_digest', subject.contentDigest));
  main.properties.add(new Models.Property('cib:image:arch', subject.arch));

  const components = new Map<string, Models.Component>();
  for (const p of pkgs) {
    const purl = apkPurl(p, subject.release);
    const maint = splitMaintainer(p.maintainer);
    const c = new Models.Component(Enums.ComponentType.Library, p.name, {
      bomRef: purl,
      version: p.version,
      purl,
      ...(p.description ? { description: p.description } : {}),
      ...(maint
        ? {
            supplier: new Models.OrganizationalEntity({
              name: maint.name,
              contact: new Models.OrganizationalContactRepository([
                new Models.OrganizationalContact({
                  name: maint.name,
                  ...(maint.email ? { email: maint.email } : {}),
                }),
              ]),
            }),
          }
        : {}),
      publisher: 'Alpine Linux',
    });
    const sum = checksumHex(p.checksum);
    if (sum) c.hashes.set(Enums.HashAlgorithm['SHA-1'], sum.hex);
    const lic = apkLicense(p.license);
    if (lic.expression) {
      if (lic.single && !lic.expression.startsWith('LicenseRef-')) {
        c.licenses.add(new Models.SpdxLicense(lic.expression));
      } else if (lic.single) {
        c.licenses.add(new Models.NamedLicense(lic.refs.get(lic.expression) ?? lic.expression));
      } else {
        c.licenses.add(new Models.LicenseExpression(lic.expression));
      }
    }
    if (p.url) {
      c.externalReferences.add(new Models.ExternalReference(p.url, Enums.ExternalReferenceType.Website));
    }
    c.properties.add(new Models.Property('cib:apk:arch', p.arch));
    if (p.origin) c.properties.add(new Models.Property('cib:apk:origin', p.origin));
    if (p.commit) c.properties.add(new Models.Property('cib:apk:commit', p.commit));
    if (p.buildTime !== undefined)
      c.properties.add(new Models.Property('cib:apk:build_time', String(p.buildTime)));
    if (p.checksum) c.properties.add(new Models.Property('cib:apk:checksum', p.checksum));
    components.set(p.name, c);
  }
  for (const p of pkgs) {
    const c = components.get(p.name)!;
    for (const d of deps.get(p.name) ?? []) c.dependencies.add(components.get(d)!.bomRef);
    main.dependencies.add(c.bomRef);
  }
  const bom = new Models.Bom({
    metadata: new Models.Metadata({
      timestamp: new Date(Math.floor(input.created.getTime() / 1000) * 1000),
      component: main,
      tools: new Models.Tools({
        components: new Models.ComponentRepository([
          new Models.Component(Enums.ComponentType.Application, tool.name, { version: tool.version }),
        ]),
      }),
    }),
    components: new Models.ComponentRepository(components.values()),
  });
  bom.serialNumber = `urn:uuid:${contentUuid('cdx', subject.name, subject.file?.sha256 ?? '', packagesKey(pkgs))}`;
  return bom;
}

/** CycloneDX 1.6 JSON text of a BOM, lists sorted. */
export function serializeCycloneDx(bom: Models.Bom): string {
  const serializer = new Serialize.JsonSerializer(new Serialize.JSON.Normalize.Factory(Spec.Spec1dot6));
  return `${serializer.serialize(bom, { sortLists: true, space: 2 })}\n`;
}

export function serializeSpdx(doc: SpdxDocument): string {
  return `${JSON.stringify(doc, null, 2)}\n`;
}
