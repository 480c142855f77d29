/** Small EC2 helpers shared by import, publish, delete and list. */
import {
  type Image as Ami,
  DeleteSnapshotCommand,
  DeregisterImageCommand,
  DescribeImagesCommand,
  DescribeSnapshotsCommand,
  type EC2Client,
  type Filter,
  type Snapshot,
  type Tag,
} from '@aws-sdk/client-ec2';
import type { Logger } from 'pino';
import type { Image } from '../../state/image.js';
import { foreignResponse } from '../../util/http-error.js';
import { pollUntil, sleep } from '../wait.js';
import type { AwsTuning } from './tuning.js';

export type { Ami };

/** The tags that identify one revision of one variant (what idempotent lookups search by). */
export interface IdentityTags {
  project: string;
  image_key: string;
  revision: string;
  [k: string]: string;
}

export function identityTags(image: Image): IdentityTags {
  const t = image.tags();
  return { project: t.project, image_key: t.image_key, revision: String(t.revision) };
}

/** The image's tags as AWS tags: every value a string, plus `Name` (what the console shows). */
export function imageTagMap(
  image: Image,
  extra: Record<string, string | undefined> = {},
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(image.tags())) {
    if (v !== undefined && v !== null && v !== '') out[k] = String(v);
  }
  for (const [k, v] of Object.entries(extra)) if (v !== undefined) out[k] = v;
  out.Name = image.imageName;
  return out;
}

export function toTags(rec: Record<string, string>): Tag[] {
  return Object.entries(rec).map(([Key, Value]) => ({ Key, Value }));
}

export function fromTags(tags: Tag[] | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const t of tags ?? []) if (t.Key !== undefined) out[t.Key] = t.Value ?? '';
  return out;
}

function tagFilters(tags: Record<string, string>): Filter[] {
  return Object.entries(tags).map(([k, v]) => ({ Name: `tag:${k}`, Values: [v] }));
}

/** AMIs owned by this account carrying all of `tags`, newest first. */
export async function findImages(
  ec2: EC2Client,
  tags: Record<string, string>,
  extra: Filter[] = [],
): Promise<Ami[]> {
  const res = await ec2.send(
    new DescribeImagesCommand({ Owners: ['self'], Filters: [...tagFilters(tags), ...extra] }),
  );
  return (res.Images ?? []).sort((a, b) =>
    String(b.CreationDate ?? '').localeCompare(String(a.CreationDate ?? '')),
  );
}

export async function findImageByName(ec2: EC2Client, name: string): Promise<Ami | undefined> {
  const res = await ec2.send(
    new DescribeImagesCommand({ Owners: ['self'], Filters: [{ Name: 'name', Values: [name] }] }),
  );
  return res.Images?.[0];
}

export async function describeImage(ec2: EC2Client, imageId: string): Promise<Ami | undefined> {
  try {
    const res = await ec2.send(new DescribeImagesCommand({ ImageIds: [imageId] }));
    return res.Images?.[0];
  } catch (err) {
    if (errorCode(err)?.startsWith('InvalidAMIID')) return undefined;
    throw err;
  }
}

export async function findSnapshots(ec2: EC2Client, tags: Record<string, string>): Promise<Snapshot[]> {
  const res = await ec2.send(new DescribeSnapshotsCommand({ OwnerIds: ['self'], Filters: tagFilters(tags) }));
  return res.Snapshots ?? [];
}

export function snapshotIds(ami: Ami): string[] {
  return (ami.BlockDeviceMappings ?? []).map((b) => b.Ebs?.SnapshotId).filter((s): s is string => Boolean(s));
}

/** The AWS error code (the SDK's exception name), if the error came from AWS. */
export function errorCode(err: unknown): string | undefined {
  if (err instanceof Error && '$metadata' in err) return err.name;
  return undefined;
}

export function describeError(err: unknown): string {
  const foreign = foreignResponse(err);
  if (foreign) return foreign;
  const code = errorCode(err);
  const msg = err instanceof Error ? err.message : String(err);
  return code && !msg.startsWith(code) ? `${code}: ${msg}` : msg;
}

export class ImageFailedError extends Error {
  constructor(
    readonly imageId: string,
    readonly reason: string,
  ) {
    super(`image ${imageId} failed: ${reason}`);
    this.name = 'ImageFailed';
  }
}

/** Wait with backoff until an AMI is available; ImageFailedError when it fails or disappears. */
export async function waitImageAvailable(
  ec2: EC2Client,
  imageId: string,
  what: string,
  tuning: AwsTuning,
  log: Logger,
  fields: Record<string, unknown> = {},
): Promise<Ami> {
  return pollUntil<Ami>(
    what,
    async () => {
      const ami = await describeImage(ec2, imageId);
      if (!ami) throw new ImageFailedError(imageId, 'the image disappeared');
      if (ami.State === 'available') return { done: true, value: ami };
      if (
        ami.State === 'failed' ||
        ami.State === 'invalid' ||
        ami.State === 'error' ||
        ami.State === 'deregistered'
      ) {
        const r = ami.StateReason;
        throw new ImageFailedError(
          imageId,
          r ? `${r.Code ?? ''}${r.Code && r.Message ? ': ' : ''}${r.Message ?? ''}` : String(ami.State),
        );
      }
      return { done: false, progress: ami.State };
    },
    { initialMs: tuning.pollInitialMs, maxMs: tuning.pollMaxMs, timeoutMs: tuning.copyTimeoutMs },
    log,
    fields,
  );
}

/**
 * Deregister an AMI and delete its snapshots. Snapshots can stay "in use" for a moment after deregistration,
 * so that error is retried with backoff.
 */
export async function deleteAmi(
  ec2: EC2Client,
  ami: Ami,
  log: Logger,
  fields: Record<string, unknown> = {},
): Promise<void> {
  const snaps = snapshotIds(ami);
  log.info({ ...fields, imageId: ami.ImageId }, `deregistering ${ami.ImageId} (${ami.Name ?? ''})`);
  try {
    await ec2.send(new DeregisterImageCommand({ ImageId: ami.ImageId! }));
  } catch (err) {
    if (!errorCode(err)?.startsWith('InvalidAMIID')) throw err;
  }
  for (const id of snaps) await deleteSnapshot(ec2, id, log, fields);
}

export async function deleteSnapshot(
  ec2: EC2Client,
  snapshotId: string,
  log: Logger,
  fields: Record<string, unknown> = {},
): Promise<void> {
  log.info({ ...fields, snapshotId }, `deleting snapshot ${snapshotId}`);
  for (let attempt = 0; ; attempt++) {
    try {
      await ec2.send(new DeleteSnapshotCommand({ SnapshotId: snapshotId }));
      return;
    } catch (err) {
      const code = errorCode(err);
      if (code === 'InvalidSnapshot.NotFound') return;
      if (code !== 'InvalidSnapshot.InUse' || attempt >= 6) throw err;
      await sleep(Math.min(10_000, 250 * 2 ** attempt));
    }
  }
}
