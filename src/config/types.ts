/**
 * One resolved image variant, as written to work/images.yaml (keyed by config_key). Read-only during a run: what
 * the steps do to an image is its state (src/state/image-state.ts), kept apart.
 * Field names and value shapes follow alpine-cloud-images so tooling that reads its images.yaml keeps working.
 */
export interface ImageConfig {
  config_key: string;
  image_key: string;
  release: string;
  version: string;
  arch: string;
  firmware: string;
  bootstrap: string;
  machine?: string;
  cloud: string;
  project: string;
  /** e.g. "{cloud}_alpine-3.20.3-x86_64-bios-tiny-r{revision}" ({cloud} and {revision} kept) */
  name: string;
  description: string;
  end_of_life: string;
  release_notes?: string;
  motd: string;
  login: string;
  scripts: string[];
  script_dirs: string[];
  disk_size: string;
  image_format: string;
  image_format_opts?: string | null;
  image_compress?: string | null;
  repos: string;
  repo_keys: string;
  packages: { add: string; del: string; noscripts: string };
  services: { enable: string; disable: string };
  kernel_modules: string;
  kernel_options: string;
  initfs_features: string;
  bootloader?: string;
  /** chroot or vm; unset/null: chroot where the host can run it (build local) */
  builder?: string | null;
  storage_url?: string;
  download_url?: string;
  signing_cmd?: string | null;
  signing_key?: string | null;
  signing_passphrase_env?: string | null;
  /** armored public key that verifies what signing_cmd produces */
  signing_pubkey?: string | null;
  release_cmd?: string | null;
  catalog_dir?: string | null;
  access?: Record<string, boolean | null>;
  regions?: Record<string, boolean | null>;
  // ---- owned by the AWS plugin (declared here, checked by clouds/aws/settings.ts at `configs`) ----
  encrypted?: boolean | string | null;
  /** S3 bucket for imports (null: a temporary bucket per import) */
  import_bucket?: string | null;
  imdsv2_required?: boolean | null;
  /** console link templates ({region}, {image_id}) for release pages */
  cloud_region_url?: string | null;
  cloud_launch_url?: string | null;
  qemu: {
    machine_type?: string | null;
    args?: string[][] | null;
    firmware?: string | null;
    iso_url?: string;
    [k: string]: unknown;
  };
  [key: string]: unknown;
}

/** work/images.yaml: config_key -> resolved variant, in matrix order. */
export type ImagesFile = Record<string, ImageConfig>;
