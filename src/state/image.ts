import { join } from 'node:path';
import { settingValue } from '../config/images-yaml.js';
import type { ImageConfig } from '../config/types.js';
import type { BootTestRecord } from './boot-test.js';
import { emptyState, type ImageState, type SupplyState, stateTags } from './image-state.js';

/**
 * Fill `{key}` placeholders from `values` (a record, or a lookup such as the configuration's `settingValue`);
 * unknown placeholders are left as they are.
 */
export function fillPlaceholders(
  template: string,
  values: Readonly<Record<string, unknown>> | ((key: string) => unknown),
): string {
  const lookup = typeof values === 'function' ? values : (key: string) => values[key];
  return template.replace(/\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (whole, key: string) => {
    const v = lookup(key);
    return v === undefined || v === null || typeof v === 'object' ? whole : String(v);
  });
}

export interface ImageTags {
  arch: string;
  bootstrap: string;
  cloud: string;
  description: string;
  end_of_life: string;
  firmware: string;
  image_key: string;
  machine?: string;
  name: string;
  project: string;
  release: string;
  revision: number;
  version: string;
  built?: string;
  uploaded?: string;
  imported?: string;
  import_id?: string;
  import_region?: string;
  signed?: string;
  published?: string;
  released?: string;
}

/** Per-image metadata file (<image_name>.yaml): the tags plus artifacts and bookkeeping. */
export interface ImageMetadata extends ImageTags {
  artifacts?: Record<string, string> | null;
  signing_key_fingerprint?: string;
  supply?: SupplyState | null;
  /** the latest boot test of this revision (src/state/boot-test.ts) */
  boot_test?: BootTestRecord;
  metadata_updated: string;
}

/**
 * One image variant: its configuration (read-only, resolved at `configs`), its state (what the steps did to its
 * current revision) and the names and paths derived from both. Pure: nothing here touches the disk.
 * The revision is 0 until the state step has found the latest revision in storage.
 */
export class Image {
  readonly config: ImageConfig;
  readonly workDir: string;
  #state: ImageState;

  constructor(config: ImageConfig, workDir: string, state: ImageState = emptyState()) {
    this.config = config;
    this.workDir = workDir;
    this.#state = state;
  }

  /** what the steps have done to the current revision */
  get state(): ImageState {
    return this.#state;
  }

  /** Record a step's result: `image.record(stateAfter.built(image.state, at))` (see image-state.ts). */
  record(state: ImageState): void {
    this.#state = state;
  }

  get revision(): number {
    return this.#state.revision;
  }

  get vVersion(): string {
    return this.config.version === 'edge' ? 'edge' : `v${this.config.version}`;
  }

  /** work/images/<cloud>/<image_key> */
  get localDir(): string {
    return join(this.workDir, 'images', this.config.cloud, this.config.image_key);
  }

  /** the Packer/QEMU build output */
  get localImage(): string {
    return join(this.localDir, 'image.qcow2');
  }

  /** `name` with {cloud} and {revision} filled */
  get imageName(): string {
    return this.nameFor(this.revision);
  }

  nameFor(revision: number | string): string {
    return fillPlaceholders(this.config.name, (k) =>
      k === 'revision' ? revision : settingValue(this.config, k),
    );
  }

  get imageDescription(): string {
    return fillPlaceholders(this.config.description, (k) =>
      k === 'revision' ? this.revision : settingValue(this.config, k),
    );
  }

  /** uncompressed converted image file name: <image_name>.<image_format> */
  get imageFile(): string {
    return `${this.imageName}.${this.config.image_format}`;
  }

  /** what is uploaded: the converted image, compressed when image_compress is set */
  get uploadFile(): string {
    const c = this.config.image_compress;
    if (!c) return this.imageFile;
    if (c === 'tar.gz') return `${this.imageName}.tar.gz`;
    return `${this.imageFile}.${c}`;
  }

  get imagePath(): string {
    return join(this.localDir, this.imageFile);
  }

  get uploadPath(): string {
    return join(this.localDir, this.uploadFile);
  }

  get metadataFile(): string {
    return `${this.imageName}.yaml`;
  }

  get metadataPath(): string {
    return join(this.localDir, this.metadataFile);
  }

  /** glob matching the metadata of every revision, e.g. "aws_alpine-3.20.3-...-r*.yaml" */
  get metadataGlob(): string {
    return `${this.nameFor('*')}.yaml`;
  }

  /** signing_cmd or signing_key is set */
  get signingConfigured(): boolean {
    const set = (v: unknown) => typeof v === 'string' && v.trim() !== '';
    return set(this.config.signing_cmd) || set(this.config.signing_key);
  }

  get storageUrl(): string | undefined {
    return this.config.storage_url ?? undefined;
  }

  /** The tags every cloud image and metadata file carries. */
  tags(): ImageTags {
    const c = this.config;
    const t: ImageTags = {
      arch: c.arch,
      bootstrap: c.bootstrap,
      cloud: c.cloud,
      description: this.imageDescription,
      end_of_life: c.end_of_life,
      firmware: c.firmware,
      image_key: c.image_key,
      ...(c.machine ? { machine: c.machine } : {}),
      name: this.imageName,
      project: c.project,
      release: c.release,
      revision: this.revision,
      version: c.version,
    };
    return { ...t, ...stateTags(this.#state) };
  }
}
