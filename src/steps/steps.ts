/** The build steps, in order. `./build STEP` runs every step up to and including STEP. */
export const STEPS = [
  'configs',
  'state',
  'rollback',
  'local',
  'test',
  'upload',
  'import',
  'sign',
  'publish',
  'release',
] as const;
export type Step = (typeof STEPS)[number];

/** Steps that act on images (planned per image by the state step). */
export const IMAGE_STEPS = ['local', 'test', 'upload', 'import', 'sign', 'publish', 'release'] as const;
export type ImageStep = (typeof IMAGE_STEPS)[number];

/** Steps that may be turned off with --disable. */
export const OPTIONAL_STEPS = ['test', 'import', 'sign', 'publish'] as const;
export type OptionalStep = (typeof OPTIONAL_STEPS)[number];

/** Commands beside the step chain. */
export const EXTRA_COMMANDS = ['catalog', 'prune', 'matrix', 'verify'] as const;
export type ExtraCommand = (typeof EXTRA_COMMANDS)[number];

export const STEP_HELP: Record<Step | ExtraCommand, string> = {
  configs: 'resolve image build configuration into work/images.yaml',
  state: 'report the current build state of images and what each later step would do',
  rollback: 'remove local/uploaded/imported images that are neither published nor released',
  local: 'build images locally with Packer and QEMU, convert, compress and checksum them',
  test: 'boot each built image under QEMU and check it over SSH (cloud data, packages, services, ...)',
  upload: 'upload images, checksums and metadata to storage_url',
  import: 'import local images to the cloud provider default region (*)',
  sign: 'cryptographically sign images (signing_cmd or signing_key)',
  publish: 'set image permissions and publish to cloud regions (*)',
  release: 'mark images as officially released (runs release_cmd)',
  catalog: 'write the release catalog (site YAML and JSON with "latest" aliases) from storage',
  prune: 'list (and with --really remove) old revisions, end-of-life and unreleased images',
  verify: 'rebuild images in a temporary directory and compare them with storage (first differing files)',
  matrix: 'write a CI matrix (--ci github|gitlab) whose jobs run STEP --shard I/N over one storage',
};

export function isImageStep(s: string): s is ImageStep {
  return (IMAGE_STEPS as readonly string[]).includes(s);
}

/** Whether step `s` comes at or before `target` in the chain. */
export function stepAtOrBefore(s: Step, target: Step): boolean {
  return STEPS.indexOf(s) <= STEPS.indexOf(target);
}
