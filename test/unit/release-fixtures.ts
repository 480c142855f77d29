// Shared fixtures for the sign / release / catalog / prune tests: image variants and a file:// storage tree.
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pino, { type Logger } from 'pino';
import { stringify } from 'yaml';
import type { ImageConfig } from '../../src/config/types.js';
import { Image, type ImageMetadata } from '../../src/state/image.js';
import { emptyState } from '../../src/state/image-state.js';

export interface VariantOptions {
  version: string;
  release: string;
  arch?: string;
  firmware?: string;
  bootstrap?: string;
  machine?: string;
  cloud?: string;
  /** root directory of the file:// storage tree */
  storageRoot: string;
  endOfLife?: string;
  revision?: number;
  extra?: Partial<ImageConfig>;
}

export const PROJECT = 'https://example.org/cloud-test';

/** A resolved variant as the configs step would write it to work/images.yaml (only what these tests need). */
/** A fixture variant; `revision` is the revision imageOf gives its image (not part of the configuration). */
export function variant(o: VariantOptions): ImageConfig & { revision?: number } {
  const arch = o.arch ?? 'x86_64';
  const firmware = o.firmware ?? 'uefi';
  const bootstrap = o.bootstrap ?? 'tiny';
  const machine = o.machine ?? 'vm';
  const cloud = o.cloud ?? 'aws';
  const vv = o.version === 'edge' ? 'edge' : `v${o.version}`;
  const metal = machine === 'metal' ? '-metal' : '';
  const format = cloud === 'aws' ? 'vhd' : 'qcow2';
  return {
    config_key: `${o.version}-${arch}-${firmware}-${bootstrap}-${machine}-${cloud}`,
    image_key: `${o.release}-${arch}-${firmware}-${bootstrap}-${machine}-${cloud}`,
    release: o.release,
    version: o.version,
    arch,
    firmware,
    bootstrap,
    machine,
    cloud,
    project: PROJECT,
    name: `{cloud}_alpine-${o.release}-${arch}-${firmware}-${bootstrap}${metal}-r{revision}`,
    description: `Alpine Linux ${o.release} ${arch} ${firmware} ${bootstrap} - r{revision}`,
    end_of_life: o.endOfLife ?? '2099-11-01',
    motd: 'Welcome',
    login: 'alpine',
    scripts: ['setup'],
    script_dirs: ['setup.d'],
    disk_size: 1024,
    image_format: format,
    repos: [],
    repo_keys: [],
    packages: { add: [], del: [], noscripts: [] },
    services: { enable: {}, disable: {} },
    kernel_modules: [],
    kernel_options: [],
    initfs_features: [],
    storage_url: `file://${o.storageRoot}/${vv}/${cloud}/${arch}`,
    download_url: `https://cdn.example.org/alpine/${vv}/releases/cloud`,
    qemu: { iso_url: 'file:///nonexistent/alpine-virt.iso' },
    revision: o.revision ?? 0,
    ...(cloud === 'aws' ? { cloud_name: 'Amazon Web Services' } : { cloud_name: 'NoCloud' }),
    ...o.extra,
  };
}

/** The image of a fixture variant, at the revision the fixture gives it (0 unless set). */
export function imageOf(config: ImageConfig & { revision?: number }, workDir: string): Image {
  const { revision, ...rest } = config;
  return new Image(rest, workDir, emptyState(revision ?? 0));
}

/** The same variant at another point release (as an older build in storage would have been named). */
export function atRelease(config: ImageConfig, release: string): ImageConfig {
  return {
    ...config,
    release,
    image_key: config.image_key.replace(config.release, release),
    name: config.name.replace(config.release, release),
    description: config.description.replace(config.release, release),
  };
}

export interface StoredOptions {
  released?: string;
  published?: string;
  signed?: string;
  fingerprint?: string;
  artifacts?: Record<string, string>;
  /** which files to lay down (all by default) */
  image?: boolean;
  sha512?: boolean;
  asc?: boolean;
  metadata?: boolean;
}

export interface StoredRevisionFixture {
  dir: string;
  name: string;
  uploadFile: string;
  files: string[];
  sha512: string;
  meta: ImageMetadata;
}

function sha512(data: string | Buffer): string {
  return createHash('sha512').update(data).digest('hex');
}

/** Lay one revision of a variant into its file:// storage directory, as upload/sign/publish/release leave it. */
export async function storeRevision(
  config: ImageConfig,
  revision: number,
  o: StoredOptions = {},
): Promise<StoredRevisionFixture> {
  const image = imageOf({ ...config, revision }, '/nonexistent-work');
  const dir = new URL(config.storage_url!).pathname;
  await mkdir(dir, { recursive: true });
  const files: string[] = [];
  const body = randomBytes(256);
  const up = image.uploadFile;
  if (o.image !== false) {
    await writeFile(join(dir, up), body);
    files.push(up);
  }
  if (o.sha512 !== false) {
    await writeFile(join(dir, `${up}.sha512`), `${sha512(body)}\n`);
    files.push(`${up}.sha512`);
  }
  if (o.signed && o.asc !== false) {
    await writeFile(
      join(dir, `${up}.asc`),
      '-----BEGIN PGP SIGNATURE-----\nfake\n-----END PGP SIGNATURE-----\n',
    );
    files.push(`${up}.asc`);
  }
  const meta: ImageMetadata = {
    ...image.tags(),
    uploaded: '2025-01-02T03:04:05.000Z',
    built: '2025-01-02T02:00:00.000Z',
    ...(o.published ? { published: o.published } : {}),
    ...(o.released ? { released: o.released } : {}),
    ...(o.signed ? { signed: o.signed } : {}),
    artifacts: o.artifacts ?? null,
    ...(o.fingerprint ? { signing_key_fingerprint: o.fingerprint } : {}),
    boot_test: {
      status: 'passed',
      at: '2025-01-02T02:10:00.000Z',
      built: '2025-01-02T02:00:00.000Z',
      times: { ssh: 36.8 },
    },
    metadata_updated: '2025-01-03T00:00:00.000Z',
  };
  if (o.metadata !== false) {
    const text = stringify(meta);
    await writeFile(join(dir, image.metadataFile), text);
    await writeFile(join(dir, `${image.metadataFile}.sha512`), `${sha512(text)}\n`);
    files.push(image.metadataFile, `${image.metadataFile}.sha512`);
  }
  return { dir, name: image.imageName, uploadFile: up, files: files.sort(), sha512: sha512(body), meta };
}

/** Every file under a directory tree, relative, sorted. */
export async function treeFiles(root: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string, rel: string) => {
    let entries: import('node:fs').Dirent[];
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      if (e.isDirectory()) await walk(join(dir, e.name), rel ? `${rel}/${e.name}` : e.name);
      else out.push(rel ? `${rel}/${e.name}` : e.name);
    }
  };
  await walk(root, '');
  return out.sort();
}

/** A logger whose output is kept in memory (to check what is and is not logged). */
export function memoryLogger(): { log: Logger; text: () => string } {
  const chunks: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      chunks.push(String(chunk));
      cb();
    },
  });
  return { log: pino({ level: 'debug' }, sink), text: () => chunks.join('') };
}
