// The release catalog's model: the catalog entry of a stored revision, the JSON catalog and the site data
// (releases.yaml), computed from what storage holds without reading or writing anything. The I/O (scanning
// storage, fetching checksums, writing the files) is ./catalog.ts.

import type { CloudPlugin } from '../clouds/types.js';
import { settingValue, settingValues } from '../config/images-yaml.js';
import type { BootTestRecord } from '../state/boot-test.js';
import { fillPlaceholders, type Image } from '../state/image.js';
import { compareRelease, compareVersion, type StoredRevision } from './revisions.js';

export const CATALOG_FORMAT = 1;

export interface CatalogRegion {
  region: string;
  image_id: string;
  region_url: string | null;
  launch_url: string | null;
}

/** One variant's newest released revision. */
export interface CatalogEntry {
  /** "<version>/<arch>/<firmware>/<bootstrap>/<machine>/<cloud>" */
  id: string;
  version: string;
  release: string;
  revision: number;
  arch: string;
  firmware: string;
  bootstrap: string;
  machine: string;
  cloud: string;
  image_key: string;
  name: string;
  description: string | null;
  end_of_life: string | null;
  built: string | null;
  uploaded: string | null;
  released: string;
  signed: string | null;
  image_format: string;
  /** the stored (and released) file name */
  file: string;
  download_url: string | null;
  checksum: { sha512: string } | null;
  checksum_url: string | null;
  signature_url: string | null;
  signing_key_fingerprint: string | null;
  metadata_url: string | null;
  /** seconds from power-on until SSH answered in the image's boot test (the test step), when it passed */
  boot_seconds: number | null;
  /** when that boot test ran */
  boot_tested: string | null;
  regions: CatalogRegion[];
  /** SBOMs, root filesystem manifest and provenance stored beside the image; null when it has none */
  supply: CatalogSupply | null;
}

export interface CatalogSupply {
  /** "sha256:<hex>" of the root filesystem manifest */
  content_digest: string;
  packages: number;
  /** spdx, cyclonedx, manifest, provenance: the stored files */
  files: {
    kind: string;
    file: string;
    url: string | null;
    checksum_url: string | null;
    signature_url: string | null;
  }[];
}

export interface Catalog {
  format: number;
  generated: string;
  /** the newest numbered version with a released image */
  latest_stable: string | null;
  versions: { version: string; release: string; end_of_life: string | null; eol: boolean }[];
  images: CatalogEntry[];
  /** "<version>/<variant>" and "stable/<variant>" (newest numbered version of that variant) -> entry */
  latest: Record<string, CatalogEntry>;
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' && v !== '' ? v : v === undefined || v === null ? undefined : String(v);
}

function machineOf(image: Image): string {
  return image.config.machine ?? 'vm';
}

function variantPath(image: Image): string {
  const c = image.config;
  return `${c.arch}/${c.firmware}/${c.bootstrap}/${machineOf(image)}/${c.cloud}`;
}

function regionLinks(
  image: Image,
  plugin: CloudPlugin | undefined,
  region: string,
  imageId: string,
): { region_url: string | null; launch_url: string | null } {
  const values = { ...settingValues(image.config), v_version: image.vVersion, region, image_id: imageId };
  // the configured template, else the cloud's plugin (which alone knows its console): nothing here knows a cloud
  const pick = (configured: unknown, fromPlugin: (() => string | undefined) | undefined) => {
    const t = str(configured);
    if (t) return fillPlaceholders(t, values);
    return fromPlugin?.() ?? null;
  };
  return {
    region_url: pick(
      image.config.cloud_region_url,
      plugin?.regionUrl ? () => plugin.regionUrl!(image, region, imageId) : undefined,
    ),
    launch_url: pick(
      image.config.cloud_launch_url,
      plugin?.launchUrl ? () => plugin.launchUrl!(image, region, imageId) : undefined,
    ),
  };
}

export function downloadBase(image: Image): string | undefined {
  const d = str(image.config.download_url);
  if (!d) return undefined;
  return fillPlaceholders(d, (k) =>
    k === 'v_version' ? image.vVersion : settingValue(image.config, k),
  ).replace(/\/+$/, '');
}

/** The newest released revision per variant: highest release, then highest revision. */
export function newestReleased(revisions: readonly StoredRevision[]): Map<Image, StoredRevision> {
  const out = new Map<Image, StoredRevision>();
  for (const r of revisions) {
    if (!r.meta?.released) continue;
    const cur = out.get(r.image);
    if (
      !cur ||
      compareRelease(r.release, cur.release) > 0 ||
      (r.release === cur.release && r.revision > cur.revision)
    ) {
      out.set(r.image, r);
    }
  }
  return out;
}

/**
 * The catalog entry of a stored revision: its metadata, checksum and the files listed beside it, with URLs
 * from download_url and region links from the configuration's templates or the cloud's plugin.
 */
export function entryFor(
  r: StoredRevision,
  checksum: string | undefined,
  listing: ReadonlySet<string>,
  plugin: CloudPlugin | undefined,
  warn: (msg: string) => void,
): CatalogEntry {
  const image = r.image;
  const c = image.config;
  const m = r.meta!;
  const base = downloadBase(image);
  const url = (f: string) => (base ? `${base}/${f}` : null);
  const signed = str(m.signed) ?? null;
  const hasAsc = listing.has(`${r.uploadFile}.asc`);
  if (signed && !hasAsc) warn(`${r.storageUrl}/${r.uploadFile}.asc: missing although ${r.name} is signed`);
  const artifacts = m.artifacts && typeof m.artifacts === 'object' ? m.artifacts : {};
  const regions = Object.keys(artifacts)
    .sort()
    .map((region) => {
      const id = String(artifacts[region]);
      return { region, image_id: id, ...regionLinks(image, plugin, region, id) };
    });
  const fingerprint = str(m.signing_key_fingerprint) ?? null;
  const sup = m.supply && typeof m.supply === 'object' ? m.supply : undefined;
  const supply: CatalogSupply | null =
    sup && typeof sup.content_digest === 'string' && sup.content_digest
      ? {
          content_digest: sup.content_digest,
          packages: Number(sup.packages ?? 0),
          files: Object.entries(sup.files ?? {})
            .filter(([, f]) => typeof f === 'string' && listing.has(f))
            .map(([kind, f]) => ({
              kind,
              file: f,
              url: url(f),
              checksum_url: listing.has(`${f}.sha512`) ? url(`${f}.sha512`) : null,
              signature_url: listing.has(`${f}.asc`) ? url(`${f}.asc`) : null,
            })),
        }
      : null;
  return {
    id: `${c.version}/${variantPath(image)}`,
    version: c.version,
    release: r.release,
    revision: r.revision,
    arch: c.arch,
    firmware: c.firmware,
    bootstrap: c.bootstrap,
    machine: machineOf(image),
    cloud: c.cloud,
    image_key: r.imageKey,
    name: r.name,
    description: str(m.description) ?? null,
    end_of_life: str(m.end_of_life) ?? str(c.end_of_life) ?? null,
    built: str(m.built) ?? null,
    uploaded: str(m.uploaded) ?? null,
    released: String(m.released),
    signed,
    image_format: c.image_format,
    file: r.uploadFile,
    download_url: url(r.uploadFile),
    checksum: checksum && checksum.length === 128 ? { sha512: checksum } : null,
    checksum_url: checksum ? url(`${r.uploadFile}.sha512`) : null,
    signature_url: signed && hasAsc ? url(`${r.uploadFile}.asc`) : null,
    signing_key_fingerprint: signed ? fingerprint : null,
    metadata_url: url(`${r.name}.yaml`),
    ...bootTimes(m.boot_test),
    regions,
    supply,
  };
}

function bootTimes(t: BootTestRecord | undefined): {
  boot_seconds: number | null;
  boot_tested: string | null;
} {
  const ssh = t?.status === 'passed' ? t.times?.ssh : undefined;
  return typeof ssh === 'number'
    ? { boot_seconds: ssh, boot_tested: t!.at }
    : { boot_seconds: null, boot_tested: null };
}

function isPast(date: string | null, now: Date): boolean {
  if (!date) return false;
  const t = Date.parse(date);
  return Number.isFinite(t) && t < now.getTime();
}

/** Numbered versions newest first, then edge. */
function newestVersionFirst(a: string, b: string): number {
  if ((a === 'edge') !== (b === 'edge')) return a === 'edge' ? 1 : -1;
  return compareVersion(b, a);
}

/** Build the JSON catalog from chosen entries (already in images.yaml order). */
export function buildCatalog(entries: readonly CatalogEntry[], now: Date): Catalog {
  const sorted = [...entries].sort((a, b) => newestVersionFirst(a.version, b.version));
  const versions = new Map<string, Catalog['versions'][number]>();
  for (const e of sorted) {
    const v = versions.get(e.version);
    if (!v) {
      versions.set(e.version, {
        version: e.version,
        release: e.release,
        end_of_life: e.end_of_life,
        eol: isPast(e.end_of_life, now),
      });
    } else if (compareRelease(e.release, v.release) > 0) {
      v.release = e.release;
    }
  }
  const latest: Record<string, CatalogEntry> = {};
  for (const e of sorted) {
    const variant = e.id.slice(e.version.length + 1);
    latest[e.id] = e;
    // newest numbered version first, so the first one seen wins
    if (e.version !== 'edge' && !latest[`stable/${variant}`]) latest[`stable/${variant}`] = e;
  }
  const stable = sorted.find((e) => e.version !== 'edge');
  return {
    format: CATALOG_FORMAT,
    generated: now.toISOString(),
    latest_stable: stable?.version ?? null,
    versions: [...versions.values()],
    images: sorted,
    latest,
  };
}

type NamedFilter = Record<string, string>;

/**
 * The alpine-mksite data (cloud/releases.yaml): filters and versions -> images -> downloads/regions.
 * Edge and end-of-life versions are left out (alpine-cloud-images never had them in images.yaml).
 */
export function buildSiteData(
  chosen: readonly { r: StoredRevision; e: CatalogEntry }[],
  now: Date,
): {
  filters: Record<string, unknown[]>;
  versions: unknown[];
} {
  const filters: Record<string, Map<string, NamedFilter>> = {
    clouds: new Map(),
    regions: new Map(),
    archs: new Map(),
    firmwares: new Map(),
    bootstraps: new Map(),
    machines: new Map(),
  };
  const regionClouds = new Map<string, string[]>();
  const addFilter = (kind: string, key: string, field: string, name: unknown) => {
    const f = filters[kind]!;
    if (!f.has(key)) f.set(key, { [field]: key, [`${field}_name`]: str(name) ?? key });
  };
  interface SiteImage {
    variant: string;
    arch: string;
    firmware: string;
    bootstrap: string;
    machine: string;
    released: string;
    downloads: Map<string, Record<string, string | null>>;
    regions: Map<string, Record<string, string | null>>;
  }
  const versions = new Map<
    string,
    { version: string; release: string; end_of_life: string | null; images: Map<string, SiteImage> }
  >();
  for (const { r, e } of chosen) {
    if (e.version === 'edge' || isPast(e.end_of_life, now)) continue;
    const c = r.image.config;
    addFilter('clouds', e.cloud, 'cloud', c.cloud_name);
    addFilter('archs', e.arch, 'arch', c.arch_name);
    addFilter('firmwares', e.firmware, 'firmware', c.firmware_name);
    addFilter('bootstraps', e.bootstrap, 'bootstrap', c.bootstrap_name);
    addFilter('machines', e.machine, 'machine', c.machine_name);
    let v = versions.get(e.version);
    if (!v) {
      v = { version: e.version, release: e.release, end_of_life: e.end_of_life, images: new Map() };
      versions.set(e.version, v);
    } else if (compareRelease(e.release, v.release) > 0) {
      v.release = e.release;
    }
    // one site image per variant across clouds; the cloud is a download (and its regions)
    const variant = `${e.release} ${e.arch} ${e.firmware} ${e.bootstrap} ${e.machine}`;
    let img = v.images.get(variant);
    if (!img) {
      img = {
        variant,
        arch: e.arch,
        firmware: e.firmware,
        bootstrap: e.bootstrap,
        machine: e.machine,
        released: e.released.split('T')[0]!,
        downloads: new Map(),
        regions: new Map(),
      };
      v.images.set(variant, img);
    }
    const base = downloadBase(r.image);
    img.downloads.set(e.cloud, {
      cloud: e.cloud,
      image_name: e.name,
      image_format: e.image_format,
      // as alpine-cloud-images wrote it: <download_url>/<image name>, the page adds ".<image_format>"
      image_url: base ? `${base}/${e.name}` : null,
      image_file: e.file,
      download_url: e.download_url,
    });
    for (const reg of e.regions) {
      img.regions.set(`${reg.region}\u0000${e.cloud}`, {
        cloud: e.cloud,
        region: reg.region,
        region_url: reg.region_url,
        launch_url: reg.launch_url,
      });
      const clouds = regionClouds.get(reg.region) ?? [];
      if (!clouds.includes(e.cloud)) clouds.push(e.cloud);
      regionClouds.set(reg.region, clouds);
      if (!filters.regions!.has(reg.region)) filters.regions!.set(reg.region, { region: reg.region });
    }
  }
  const outFilters: Record<string, unknown[]> = {};
  for (const [kind, f] of Object.entries(filters)) {
    outFilters[kind] =
      kind === 'regions'
        ? [...f.values()].map((r) => ({
            ...r,
            clouds: (regionClouds.get(r.region!) ?? []).map((cloud) => ({ cloud })),
          }))
        : [...f.values()];
  }
  const outVersions = [...versions.values()]
    .sort((a, b) => newestVersionFirst(a.version, b.version))
    .map((v) => ({
      version: v.version,
      release: v.release,
      end_of_life: v.end_of_life,
      images: [...v.images.values()].map((i) => ({
        variant: i.variant,
        arch: i.arch,
        firmware: i.firmware,
        bootstrap: i.bootstrap,
        machine: i.machine,
        released: i.released,
        downloads: [...i.downloads.values()],
        regions: [...i.regions.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([, r]) => r),
      })),
    }));
  return { filters: outFilters, versions: outVersions };
}
