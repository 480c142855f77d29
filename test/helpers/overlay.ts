import { mkdir, mkdtemp, readFile, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { parseImagesYaml } from '../../src/config/images-yaml.js';
import type { ImageConfig, ImagesFile } from '../../src/config/types.js';
import { Image } from '../../src/state/image.js';
import { emptyState, type ImageState, stateAfter } from '../../src/state/image-state.js';
import { ROOT } from './cli.js';

export const RELEASES_URL = `file://${join(ROOT, 'test', 'fixtures', 'releases.json')}`;

export interface OverlayOptions {
  /** storage_url template, e.g. file:///tmp/x/{v_version}/{cloud}/{arch} */
  storageUrl: string;
  clouds?: string[];
  versions?: string[];
  arches?: string[];
  firmwares?: string[];
  bootstraps?: string[];
  /** extra Default settings */
  defaults?: Record<string, unknown>;
  /** per-cloud settings */
  cloudSettings?: Record<string, Record<string, unknown>>;
  /** where to create the overlay directory (default: the system temp dir; the caller removes it) */
  parent?: string;
}

/**
 * A self-contained --custom overlay whose configs/images.yaml selects a small test matrix
 * (version × arch × uefi × tiny × vm × clouds), stored at `storageUrl`.
 */
export async function makeOverlay(opts: OverlayOptions): Promise<string> {
  const dir = await mkdtemp(join(opts.parent ?? tmpdir(), 'cib-overlay-'));
  const configs = join(dir, 'configs');
  await mkdir(configs, { recursive: true });
  const dim = (keys: string[], f: (k: string) => Record<string, unknown>) =>
    Object.fromEntries(keys.map((k) => [k, f(k)]));
  const top = {
    Default: {
      project: 'test-project',
      storage_url: opts.storageUrl,
      download_url: 'https://example.test/{v_version}/{cloud}/{arch}',
      name: ['{cloud}_alpine'],
      description: ['Alpine Linux'],
      motd: { welcome: 'Welcome to the test' },
      scripts: ['setup'],
      script_dirs: ['setup.d'],
      disk_size: [64],
      image_format: 'qcow2',
      login: 'alpine',
      access: {},
      regions: {},
      ...opts.defaults,
    },
    Dimensions: {
      version: dim(opts.versions ?? ['3.24'], () => ({})),
      arch: dim(opts.arches ?? ['x86_64'], (a) => ({ name: [a] })),
      firmware: dim(opts.firmwares ?? ['uefi'], (f) => ({
        name: [f],
        bootloader: f === 'uefi' ? 'grub-efi' : 'extlinux',
      })),
      bootstrap: dim(opts.bootstraps ?? ['tiny'], (b) => ({ name: [b] })),
      machine: { vm: {} },
      cloud: dim(opts.clouds ?? ['nocloud'], (c) => ({ ...(opts.cloudSettings?.[c] ?? {}) })),
    },
    Mandatory: { name: ['r{revision}'], description: ['- test'], scripts: ['cleanup'] },
  };
  await writeFile(join(configs, 'test.yaml'), stringify(top));
  await symlink('test.yaml', join(configs, 'images.yaml'));
  return dir;
}

/** work/images.yaml read back as the typed configuration (the run fields left out). */
export async function readImages(workDir: string): Promise<ImagesFile> {
  return parseImagesYaml(await readFile(join(workDir, 'images.yaml'), 'utf8'), 'images.yaml');
}

/** work/images.yaml as its records are written (flat settings and the run fields: state, plan). */
export async function readImagesRecords(workDir: string): Promise<Record<string, Record<string, unknown>>> {
  return parse(await readFile(join(workDir, 'images.yaml'), 'utf8')) as Record<
    string,
    Record<string, unknown>
  >;
}

export function imageOf(config: ImageConfig, workDir: string): Image {
  return new Image(config, workDir);
}

/**
 * The state after a boot test that passed on this build (fake builds cannot boot): upload, import and publish
 * take only images whose latest test passed.
 */
export function passedBootTest(s: ImageState): ImageState {
  const at = s.built ?? '2026-11-20T10:00:00.000Z';
  return stateAfter.tested(s, {
    status: 'passed',
    at,
    built: s.built,
    checks: [{ name: 'ssh', ok: true, detail: 'fake build, not booted' }],
  });
}

/**
 * Put a fake local build in place for an image, as the local step leaves it: the converted image,
 * its .sha512, and metadata saying it was built and passed its boot test. Returns the Image.
 */
export async function fakeLocalBuild(
  config: ImageConfig,
  workDir: string,
  size = 1024 * 1024,
): Promise<Image> {
  const image = new Image(
    config,
    workDir,
    passedBootTest(stateAfter.built(emptyState(), '2026-11-20T10:00:00.000Z')),
  );
  await mkdir(image.localDir, { recursive: true });
  const data = Buffer.alloc(size);
  for (let i = 0; i < size; i += 4096) data.writeUInt32LE(i ^ 0x5eed, i);
  await writeFile(image.uploadPath, data);
  const { createHash } = await import('node:crypto');
  await writeFile(`${image.uploadPath}.sha512`, `${createHash('sha512').update(data).digest('hex')}\n`);
  const { writeMetadata } = await import('../../src/state/metadata.js');
  await writeMetadata(image, new Date('2026-11-20T10:00:00.000Z'));
  return image;
}
