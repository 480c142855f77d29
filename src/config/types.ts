/**
 * One resolved image variant: the typed, read-only configuration produced once at `configs` (src/config/normalize.ts)
 * or read back from work/images.yaml (src/config/images-yaml.ts). What the steps do to an image is its state
 * (src/state/image-state.ts), kept apart.
 *
 * Every setting the tool reads is declared here, with the module that reads it named beside it; that module owns
 * the check (core settings: SETTINGS in normalize.ts; a cloud plugin's: its `checkConfig`). Lists and maps are real
 * lists and maps; the joined strings of alpine-cloud-images's images.yaml exist only in the serializer
 * (imagesYamlText) and, for the setup scripts' environment, in src/local/variant.ts `scriptEnvironment`.
 *
 * Settings the tool does not read (a config may carry any key, e.g. `bootstrap_url`) stay on the object, invisible
 * to this type: only the serializer writes them to images.yaml and offers them to `{placeholder}` fills
 * (`settingValue`/`settingValues` in images-yaml.ts).
 */
export interface ImageConfig {
  readonly config_key: string;
  readonly image_key: string;
  readonly release: string;
  // ---- the dimension keys (open sets: a config may add keys to any dimension) ----
  readonly version: string;
  readonly arch: string;
  readonly firmware: string;
  readonly bootstrap: string;
  readonly machine?: string;
  readonly cloud: string;
  readonly project: string;
  /** e.g. "{cloud}_alpine-3.20.3-x86_64-bios-tiny-r{revision}" ({cloud} and {revision} kept) */
  readonly name: string;
  readonly description: string;
  /** YYYY-MM-DD (from releases.json unless a config sets it) */
  readonly end_of_life: string;
  readonly release_notes?: string | null;
  /** the message of the day, messages joined by blank lines */
  readonly motd: string;
  readonly login: string;
  readonly scripts: readonly string[];
  readonly script_dirs: readonly string[];
  /** MiB (images.yaml: "416M") */
  readonly disk_size: number;
  readonly image_format: ImageFormat;
  readonly image_format_opts?: string | null;
  readonly image_compress?: ImageCompression | null;
  /** /etc/apk/repositories, in order */
  readonly repos: readonly Repository[];
  /** extra repository signing keys (URLs or files) */
  readonly repo_keys: readonly string[];
  readonly packages: PackageLists;
  readonly services: ServiceLists;
  readonly kernel_modules: readonly string[];
  readonly kernel_options: readonly string[];
  readonly initfs_features: readonly string[];
  // ---- read by the local builders (src/local) and their setup scripts ----
  readonly bootloader?: string | null;
  /** chroot or vm; unset/null: chroot where the host can run it (build local) */
  readonly builder?: BuilderKind | null;
  /** seconds the bootloader waits (BOOTLOADER_TIMEOUT) */
  readonly bootloader_timeout?: number | null;
  /** the NTP server chrony is pointed at ("" or null: the distribution's default) */
  readonly ntp_server?: string | null;
  readonly qemu: QemuSettings;
  // ---- storage, signing and release (src/storage, src/release) ----
  readonly storage_url?: string | null;
  readonly download_url?: string | null;
  readonly signing_cmd?: string | null;
  readonly signing_key?: string | null;
  readonly signing_passphrase_env?: string | null;
  /** armored public key that verifies what signing_cmd produces */
  readonly signing_pubkey?: string | null;
  readonly release_cmd?: string | null;
  readonly catalog_dir?: string | null;
  /** display names of the dimension keys on release pages (src/release/catalog.ts); the key when unset */
  readonly cloud_name?: string | null;
  readonly arch_name?: string | null;
  readonly firmware_name?: string | null;
  readonly bootstrap_name?: string | null;
  readonly machine_name?: string | null;
  // ---- publishing (every cloud plugin reads these; each checks the key shapes of its cloud) ----
  readonly access?: FlagMap;
  readonly regions?: FlagMap;
  /** console link templates ({region}, {image_id}) for release pages (the plugin's own links when unset) */
  readonly cloud_region_url?: string | null;
  readonly cloud_launch_url?: string | null;
  // ---- owned by the AWS plugin (checked by src/clouds/aws/settings.ts at `configs`) ----
  /** true, false, or a KMS key id */
  readonly encrypted?: boolean | string | null;
  /** S3 bucket for imports (null: a temporary bucket per import) */
  readonly import_bucket?: string | null;
  readonly imdsv2_required?: boolean | null;
}

export const IMAGE_FORMATS = ['qcow2', 'vhd', 'raw', 'raw.tar.gz'] as const;
export type ImageFormat = (typeof IMAGE_FORMATS)[number];
export const IMAGE_COMPRESSIONS = ['bz2', 'gz', 'xz', 'zstd', 'tar.gz'] as const;
export type ImageCompression = (typeof IMAGE_COMPRESSIONS)[number];
export type BuilderKind = 'chroot' | 'vm';

/** name (account, region, ...) -> true (on), false (off), null (as the wildcard entry says) */
export type FlagMap = Readonly<Record<string, boolean | null>>;

/** One line of /etc/apk/repositories. */
export interface Repository {
  readonly url: string;
  /** false: written commented out */
  readonly enabled: boolean;
  /** an apk repository tag (`@tag url`): packages pinned with name@tag come from it */
  readonly tag: string | null;
}

/** apk package specs: a name, or name@tag for a tagged repository */
export interface PackageLists {
  readonly add: readonly string[];
  readonly del: readonly string[];
  /** added with `apk add --no-scripts` */
  readonly noscripts: readonly string[];
}

/** runlevel -> services, in config order (runlevels without services are left out) */
export type RunlevelServices = Readonly<Record<string, readonly string[]>>;

export interface ServiceLists {
  readonly enable: RunlevelServices;
  readonly disable: RunlevelServices;
}

/** How the VM builder and the boot test run QEMU (src/local, src/boottest). */
export interface QemuSettings {
  readonly machine_type?: string | null;
  /** extra QEMU arguments, one list per option (numbers allowed: `[-m, 1024]`) */
  readonly args?: readonly (readonly (string | number)[])[] | null;
  /** UEFI firmware for -bios ({work_dir} filled) */
  readonly firmware?: string | null;
  /** the virt ISO the VM builder boots (set at `configs` from releases.json) */
  readonly iso_url: string;
  /** virtio-scsi: the VM builder's CD-ROM on a virtio-scsi controller */
  readonly cdrom_interface?: string | null;
  /** the VM builder's direct kernel boot: kernel, initrd (paths inside the ISO) and kernel command line */
  readonly boot_kernel?: string | null;
  readonly boot_initrd?: string | null;
  readonly boot_cmdline?: string | null;
}

/** work/images.yaml: config_key -> resolved variant, in matrix order. */
export type ImagesFile = Record<string, ImageConfig>;
