/**
 * The EC2 emulator in-process on a free port, plus what AWS plugin tests need around it: a small fixed VHD, an
 * aws image variant, a CloudContext whose logs are captured, and an environment pointing the SDK at the emulator.
 */
import { mkdir, open } from 'node:fs/promises';
import { dirname } from 'node:path';
import pino from 'pino';
import { type Ec2Emulator, type Ec2EmulatorOptions, startEc2Emulator } from '../../emulators/ec2/server.js';
import type { CloudContext } from '../../src/clouds/types.js';
import type { ImageConfig } from '../../src/config/types.js';
import { Image } from '../../src/state/image.js';
import { emptyState } from '../../src/state/image-state.js';
import { REDACT_PATHS } from '../../src/util/log.js';

export type { Ec2Emulator } from '../../emulators/ec2/server.js';

/** Short latencies: an API answer in 5-30 ms, imports and copies in a few hundred. */
export async function startEc2(opts: Ec2EmulatorOptions = {}): Promise<Ec2Emulator> {
  return startEc2Emulator({
    ...opts,
    latency: { apiMs: [5, 30], importMs: 300, copyMs: 250, registerMs: 50, ...opts.latency },
  });
}

/** SDK settings for fast tests: quick polling and retries, nothing read from ~/.aws. */
export function awsTestEnv(ec2Url: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    AWS_ENDPOINT_URL_EC2: ec2Url,
    // s3rver's own key pair (it checks the key id; the EC2 emulator takes any)
    AWS_ACCESS_KEY_ID: 'S3RVER',
    AWS_SECRET_ACCESS_KEY: 'S3RVER',
    AWS_REGION: 'us-west-2',
    AWS_CONFIG_FILE: '/dev/null',
    AWS_SHARED_CREDENTIALS_FILE: '/dev/null',
    AWS_EC2_METADATA_DISABLED: 'true',
    CLOUD_POLL_INITIAL_MS: '25',
    CLOUD_POLL_MAX_MS: '100',
    CLOUD_RETRY_BASE_MS: '10',
    CLOUD_RETRY_MAX_MS: '50',
    AWS_MAX_ATTEMPTS: '8',
    ...extra,
  };
}

/**
 * A fixed VHD: `virtualMiB` of zeros (sparse) followed by a 512-byte footer with the `conectix` cookie and the
 * virtual size, which is what the emulator's import checks.
 */
export async function writeFixedVhd(path: string, virtualMiB = 1): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const size = virtualMiB * 1024 * 1024;
  const footer = Buffer.alloc(512);
  footer.write('conectix', 0, 'latin1');
  footer.writeUInt32BE(2, 8); // features
  footer.writeUInt32BE(0x00010000, 12); // format version
  footer.writeBigUInt64BE(0xffffffffffffffffn, 16); // data offset: none (fixed disk)
  footer.writeBigUInt64BE(BigInt(size), 40); // original size
  footer.writeBigUInt64BE(BigInt(size), 48); // current size
  footer.writeUInt32BE(2, 60); // disk type: fixed
  const fh = await open(path, 'w');
  try {
    await fh.truncate(size);
    await fh.write(footer, 0, 512, size);
  } finally {
    await fh.close();
  }
}

/** One aws variant, as the config step resolves it. */
export function awsConfig(overrides: Partial<ImageConfig> = {}): ImageConfig {
  return {
    config_key: 'edge-x86_64-bios-tiny-aws',
    image_key: 'edge-x86_64-bios-tiny-aws',
    release: '20260101',
    version: 'edge',
    arch: 'x86_64',
    firmware: 'bios',
    bootstrap: 'tiny',
    cloud: 'aws',
    project: 'test-cloud-images',
    name: '{cloud}_alpine-20260101-x86_64-bios-tiny-r{revision}',
    description: 'Alpine Linux edge 20260101 x86_64 bios tiny r{revision}',
    end_of_life: '2027-06-30',
    motd: '',
    login: 'alpine',
    scripts: [],
    script_dirs: [],
    disk_size: 128,
    image_format: 'vhd',
    repos: [],
    repo_keys: [],
    packages: { add: [], del: [], noscripts: [] },
    services: { enable: {}, disable: {} },
    kernel_modules: [],
    kernel_options: [],
    initfs_features: [],
    qemu: { iso_url: 'file:///nonexistent/alpine-virt.iso' },
    access: { PUBLIC: true },
    regions: { 'us-west-2': true, 'us-east-1': true, 'eu-west-1': true },
    ...overrides,
  };
}

/** An AWS image at `revision` (0 unless given). */
export function awsImage(
  workDir: string,
  { revision, ...overrides }: Partial<ImageConfig> & { revision?: number } = {},
): Image {
  return new Image(awsConfig(overrides), workDir, emptyState(revision ?? 0));
}

export interface CapturedContext {
  ctx: CloudContext;
  /** every log line (JSON), debug level and up */
  lines: string[];
  text(): string;
  messages(level?: number): string[];
}

/** A CloudContext logging to memory (with the CLI's redaction), for assertions on what was said. */
export function captureContext(opts: {
  env: NodeJS.ProcessEnv;
  workDir: string;
  useBroker?: boolean;
  cache?: boolean;
}): CapturedContext {
  const lines: string[] = [];
  const log = pino(
    { level: 'debug', redact: { paths: REDACT_PATHS, censor: '[redacted]' }, base: undefined },
    { write: (s: string) => lines.push(s) },
  );
  const ctx: CloudContext = {
    log,
    useBroker: opts.useBroker ?? false,
    env: opts.env,
    workDir: opts.workDir,
    ...(opts.cache === false ? {} : { cache: new Map<string, unknown>() }),
  };
  return {
    ctx,
    lines,
    text: () => lines.join(''),
    messages: (level = 0) =>
      lines
        .map((l) => JSON.parse(l) as { level: number; msg: string })
        .filter((l) => l.level >= level)
        .map((l) => l.msg),
  };
}
