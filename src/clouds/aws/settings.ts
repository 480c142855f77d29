// The settings the AWS plugin reads, declared and checked here (at `configs`, for every aws variant), so that
// nothing that can be checked from the configuration is left for import or publish time. Light: no SDK.
import type { ConfigIssue } from '../../config/resolve.js';
import type { ImageConfig } from '../../config/types.js';

/** Alpine arch -> AMI architecture */
export const ARCH: Readonly<Record<string, string>> = { aarch64: 'arm64', x86_64: 'x86_64' };
/** Alpine firmware -> AMI boot mode (a hybrid image boots either way: UEFI where the instance type has it) */
export const BOOT_MODE: Readonly<Record<string, string>> = {
  bios: 'legacy-bios',
  uefi: 'uefi',
  hybrid: 'uefi-preferred',
};

const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
const ACCOUNT = /^\d{12}$/;
/** e.g. us-west-2, eu-central-1, ap-southeast-4, us-gov-west-1, cn-north-1 */
const REGION = /^[a-z]{2}(-[a-z]+)+-\d{1,2}$/;

// (the settings are declared in ImageConfig; their values are read as `unknown` here because checking them is the
// point: a config file may hold anything)

/** The AWS settings, as the plugin uses them (checked by checkAwsConfig first). */
export interface AwsSettings {
  readonly arch: string;
  readonly bootMode: string;
  readonly encrypted: boolean;
  readonly kmsKeyId?: string;
  readonly imdsV2: boolean;
  readonly bucket?: string;
}

const isFlag = (v: unknown) => v === null || v === undefined || typeof v === 'boolean';

/** Every problem with an aws variant's settings. */
export function checkAwsConfig(config: ImageConfig): ConfigIssue[] {
  const out: ConfigIssue[] = [];
  if (config.image_format !== 'vhd') {
    out.push({
      key: 'image_format',
      expected: 'vhd (AWS imports VHD images)',
      found: config.image_format,
      isBad: (v) => v !== 'vhd',
    });
  }
  if (!Object.hasOwn(ARCH, config.arch)) {
    out.push({ key: 'arch', expected: `one of ${Object.keys(ARCH).join(', ')} on AWS`, found: config.arch });
  }
  if (!Object.hasOwn(BOOT_MODE, config.firmware)) {
    out.push({
      key: 'firmware',
      expected: `one of ${Object.keys(BOOT_MODE).join(', ')} on AWS`,
      found: config.firmware,
    });
  }
  const enc: unknown = config.encrypted;
  if (!isFlag(enc) && !(typeof enc === 'string' && enc !== '')) {
    out.push({ key: 'encrypted', expected: 'true, false, null or a KMS key id', found: enc });
  }
  const bucket: unknown = config.import_bucket;
  if (bucket !== undefined && bucket !== null && (typeof bucket !== 'string' || !BUCKET.test(bucket))) {
    out.push({
      key: 'import_bucket',
      expected: 'an S3 bucket name (3-63 of a-z 0-9 . -), or null for a temporary bucket',
      found: bucket,
    });
  }
  const imds: unknown = config.imdsv2_required;
  if (!isFlag(imds)) out.push({ key: 'imdsv2_required', expected: 'true, false or null', found: imds });
  for (const key of ['cloud_region_url', 'cloud_launch_url'] as const) {
    const v: unknown = config[key];
    if (v !== undefined && v !== null && (typeof v !== 'string' || !/^https:\/\//.test(v))) {
      out.push({ key, expected: 'an https:// URL with {region} and {image_id} placeholders', found: v });
    }
  }
  for (const k of Object.keys(config.access ?? {})) {
    if (k !== 'PUBLIC' && !ACCOUNT.test(k)) {
      out.push({ key: `access.${k}`, expected: 'PUBLIC or a 12-digit AWS account id', found: k });
    }
  }
  for (const k of Object.keys(config.regions ?? {})) {
    if (k !== 'ALL' && !REGION.test(k)) {
      out.push({ key: `regions.${k}`, expected: 'ALL or an AWS region name such as us-west-2', found: k });
    }
  }
  return out;
}

/** The settings of a variant checked at `configs`, as the import and publish stages use them. */
export function awsSettings(config: ImageConfig): AwsSettings {
  const enc: unknown = config.encrypted;
  const bucket: unknown = config.import_bucket;
  return {
    arch: ARCH[config.arch] ?? config.arch,
    bootMode: BOOT_MODE[config.firmware] ?? config.firmware,
    encrypted: Boolean(enc),
    ...(typeof enc === 'string' && enc ? { kmsKeyId: enc } : {}),
    imdsV2: config.imdsv2_required !== false,
    ...(typeof bucket === 'string' && bucket ? { bucket } : {}),
  };
}
