/**
 * What an import leaves behind when its run is killed, and how later runs find and remove it.
 *
 * - The temporary import bucket (and, with `import_bucket`, the object under `import/`) is named after the image
 *   and its writer: `cib-import-<project#6>-<image#10>-<host#6>-<pid>-<random4>`. The project and image parts let
 *   the next run for the image, and prune for the project, find it; the host and pid tell whether its run is gone
 *   (same host, pid not running); anything older than the import timeout is abandoned whoever made it.
 * - The snapshot an import task creates carries no tags until the run tags it. The task itself is tagged with the
 *   image's identity at ImportSnapshot, so its snapshot is found through the task (DescribeImportSnapshotTasks).
 */
import { createHash, randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import {
  DeleteBucketCommand,
  DeleteObjectCommand,
  ListBucketsCommand,
  ListObjectsV2Command,
  type S3Client,
} from '@aws-sdk/client-s3';
import type { Logger } from 'pino';
import { processAlive } from '../../util/process.js';
import { describeError, errorCode } from './ec2.js';

export const IMPORT_PREFIX = 'cib-import-';
/** temporary buckets of older versions of this tool (random names): removed once older than the import timeout */
const OLD_PREFIX = 'cloud-image-import-';

function h(text: string, len: number): string {
  return createHash('sha256').update(text).digest('hex').slice(0, len);
}

const HOST = h(hostname(), 6);

export function projectPart(project: string): string {
  return h(`project:${project}`, 6);
}

export function imagePart(ident: { project: string; image_key: string; revision: string }): string {
  return h(`${ident.project}\0${ident.image_key}\0${ident.revision}`, 10);
}

/** The prefix of every import bucket (or import/ key directory) of one image, or of one project. */
export function importPrefix(
  project: string,
  ident?: { project: string; image_key: string; revision: string },
) {
  return `${IMPORT_PREFIX}${projectPart(project)}-${ident ? `${imagePart(ident)}-` : ''}`;
}

/** A new import name for this process: at most 48 characters, a valid S3 bucket name. */
export function newImportName(ident: { project: string; image_key: string; revision: string }): string {
  return `${importPrefix(ident.project, ident)}${HOST}-${process.pid}-${randomBytes(2).toString('hex')}`;
}

const NAME_RE = /^cib-import-[0-9a-f]{6}-[0-9a-f]{10}-([0-9a-f]{6})-(\d+)-[0-9a-f]{4}$/;

/** Is the import named `name` (created at `createdMs`) abandoned, i.e. its run is gone? */
export function abandoned(
  name: string,
  createdMs: number | undefined,
  now: number,
  timeoutMs: number,
): boolean {
  if (createdMs !== undefined && now - createdMs > timeoutMs) return true;
  const m = NAME_RE.exec(name);
  if (!m) return false;
  const pid = Number(m[2]);
  return m[1] === HOST && pid !== process.pid && !processAlive(pid);
}

export interface ImportLeftover {
  bucket: string;
  /** key prefix inside a configured import bucket; undefined for a temporary bucket (removed whole) */
  prefix?: string;
  created?: string;
}

/** Temporary import buckets named with `prefix` whose run is gone (plus old-style ones past the timeout). */
export async function findImportBuckets(
  s3: S3Client,
  prefix: string,
  now: number,
  timeoutMs: number,
): Promise<ImportLeftover[]> {
  const res = await s3.send(new ListBucketsCommand({}));
  const out: ImportLeftover[] = [];
  for (const b of res.Buckets ?? []) {
    const name = b.Name ?? '';
    const created = b.CreationDate ? new Date(b.CreationDate).getTime() : undefined;
    const mine = name.startsWith(prefix) && abandoned(name, created, now, timeoutMs);
    const old = name.startsWith(OLD_PREFIX) && created !== undefined && now - created > timeoutMs;
    if (mine || old) {
      out.push({
        bucket: name,
        ...(b.CreationDate ? { created: new Date(b.CreationDate).toISOString() } : {}),
      });
    }
  }
  return out;
}

/** `import/<name>/` directories in a configured import bucket whose run is gone. */
export async function findImportObjects(
  s3: S3Client,
  bucket: string,
  prefix: string,
  now: number,
  timeoutMs: number,
): Promise<ImportLeftover[]> {
  const res = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: `import/${prefix}` }));
  const byDir = new Map<string, number | undefined>();
  for (const o of res.Contents ?? []) {
    const dir = o.Key?.split('/')[1];
    if (dir) byDir.set(dir, o.LastModified ? new Date(o.LastModified).getTime() : undefined);
  }
  return [...byDir]
    .filter(([dir, t]) => abandoned(dir, t, now, timeoutMs))
    .map(([dir]) => ({ bucket, prefix: `import/${dir}/` }));
}

/** Remove a leftover: every object in it, then (for a temporary bucket) the bucket. */
export async function removeLeftover(
  s3: S3Client,
  l: ImportLeftover,
  log: Logger,
  fields = {},
): Promise<void> {
  const what = l.prefix ? `s3://${l.bucket}/${l.prefix}` : `temporary import bucket ${l.bucket}`;
  log.info(fields, `removing ${what} left by an interrupted import`);
  let token: string | undefined;
  do {
    const res = await s3.send(
      new ListObjectsV2Command({
        Bucket: l.bucket,
        ...(l.prefix ? { Prefix: l.prefix } : {}),
        ...(token ? { ContinuationToken: token } : {}),
      }),
    );
    for (const o of res.Contents ?? []) {
      if (o.Key) await s3.send(new DeleteObjectCommand({ Bucket: l.bucket, Key: o.Key }));
    }
    token = res.IsTruncated ? res.NextContinuationToken : undefined;
  } while (token);
  if (!l.prefix) {
    try {
      await s3.send(new DeleteBucketCommand({ Bucket: l.bucket }));
    } catch (err) {
      if (errorCode(err) !== 'NoSuchBucket' && (err as { name?: string }).name !== 'NoSuchBucket') {
        throw new Error(`cannot delete ${what}: ${describeError(err)}`);
      }
    }
  }
}
