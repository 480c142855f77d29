/**
 * AWS import: VHD -> S3 (temporary or configured bucket) -> ImportSnapshot -> snapshot -> RegisterImage.
 * Idempotent: a rerun after a crash finds the AMI (or the finished snapshot) by its tags and carries on from there.
 * Whatever this run created is removed again when a later part fails.
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import {
  CreateTagsCommand,
  DeregisterImageCommand,
  DescribeImportSnapshotTasksCommand,
  DescribeSnapshotsCommand,
  type EC2Client,
  ImportSnapshotCommand,
  RegisterImageCommand,
} from '@aws-sdk/client-ec2';
import {
  CreateBucketCommand,
  DeleteBucketCommand,
  DeleteObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import type { Logger } from 'pino';
import type { Image } from '../../state/image.js';
import { crashPoint } from '../../util/crash.js';
import { errorMessage, UserError } from '../../util/errors.js';
import { isPlaceholderProject, placeholderWarning } from '../project.js';
import type { CloudContext, ImportResult } from '../types.js';
import { pollUntil } from '../wait.js';
import {
  type Ami,
  deleteAmi,
  deleteSnapshot,
  describeError,
  errorCode,
  findImageByName,
  findImages,
  findSnapshots,
  fromTags,
  identityTags,
  imageTagMap,
  snapshotIds,
  toTags,
  waitImageAvailable,
} from './ec2.js';
import {
  findImportBuckets,
  findImportObjects,
  importPrefix,
  newImportName,
  removeLeftover,
} from './leftovers.js';
import type { AwsSession } from './session.js';
import { type AwsSettings, awsSettings } from './settings.js';

export const ROOT_DEVICE = '/dev/xvda';
/** Where import failures caused by the vmimport service role are explained. */
export const VMIMPORT_DOC = 'docs/clouds.md#the-vmimport-service-role';

/**
 * An import failure that the vmimport service role explains (missing, or not allowed to read the import bucket or
 * use the KMS key): the message says so and points to the doc.
 */
export function vmimportHint(message: string): string | undefined {
  if (
    /vmimport|service role/i.test(message) ||
    /(access denied|not authori[sz]ed|unable to access|forbidden).*(s3|bucket)|(s3|bucket).*(access denied|forbidden|not authori[sz]ed)/i.test(
      message,
    ) ||
    /kms/i.test(message)
  ) {
    return (
      "the account's vmimport service role must exist, trust vmie.amazonaws.com and be allowed to read the " +
      `import bucket (and use the KMS key when encrypted names one); see ${VMIMPORT_DOC}`
    );
  }
  return undefined;
}

type ImportPlan = AwsSettings;

/** The variant's AWS settings, as import uses them (checked at `configs` by checkAwsConfig). */
export function importPlan(image: Image): ImportPlan {
  return awsSettings(image.config);
}

function sameIdentity(tags: Record<string, string>, ident: Record<string, string>): boolean {
  return Object.entries(ident).every(([k, v]) => tags[k] === v);
}

export async function importAws(image: Image, ctx: CloudContext, session: AwsSession): Promise<ImportResult> {
  const plan = importPlan(image);
  const log = ctx.log.child({ image: image.imageName });
  if (isPlaceholderProject(image.config.project)) log.warn(placeholderWarning(image.config.project));
  const region = await session.defaultRegion();
  const ec2 = session.ec2(region);
  const ident = identityTags(image);

  const adopted = await adoptExisting(image, ec2, region, session, log);
  if (adopted) return adopted;

  let size: number;
  try {
    size = (await stat(image.imagePath)).size;
  } catch {
    throw new UserError(`${image.imagePath}: converted image missing; run ./build local first`);
  }

  // a crash between the snapshot import and RegisterImage leaves a tagged snapshot: use it; a crash before the
  // snapshot was tagged leaves it findable through its import task (tagged at ImportSnapshot)
  const leftover = (await findSnapshots(ec2, ident)).find((s) => s.State === 'completed');
  let snapshotId: string | undefined;
  if (leftover?.SnapshotId) {
    snapshotId = leftover.SnapshotId;
    log.info({ region, snapshotId }, `reusing snapshot ${snapshotId} imported by an earlier run`);
  } else {
    snapshotId = await resumeImportTasks(image, ec2, region, session, log);
  }
  // what killed imports of this image left in S3 (their tasks are finished or adopted by now)
  await removeImportLeftovers(image, plan, session.s3(region), region, session, log);
  if (snapshotId) {
    // tagged (again): an adopted task's snapshot has no tags yet
    await ec2.send(new CreateTagsCommand({ Resources: [snapshotId], Tags: toTags(imageTagMap(image)) }));
  } else {
    snapshotId = await importSnapshot(image, plan, size, session.s3(region), ec2, region, session, log);
    try {
      await ec2.send(new CreateTagsCommand({ Resources: [snapshotId], Tags: toTags(imageTagMap(image)) }));
    } catch (err) {
      log.error({ snapshotId }, `cannot tag snapshot ${snapshotId}: ${describeError(err)}; removing it`);
      await deleteSnapshot(ec2, snapshotId, log).catch(() => {});
      throw err;
    }
  }
  return registerImage(image, plan, ec2, region, snapshotId, session, log);
}

function sameTags(
  tags: { Key?: string; Value?: string }[] | undefined,
  ident: Record<string, string>,
): boolean {
  return sameIdentity(fromTags(tags), ident);
}

/**
 * Import tasks of this image started by runs that were killed: a completed one gives its snapshot (reused), one
 * still running is waited for; the snapshots of any further completed tasks are duplicates and are deleted.
 */
async function resumeImportTasks(
  image: Image,
  ec2: EC2Client,
  region: string,
  session: AwsSession,
  log: Logger,
): Promise<string | undefined> {
  const ident = identityTags(image);
  const res = await ec2.send(new DescribeImportSnapshotTasksCommand({}));
  const tasks = (res.ImportSnapshotTasks ?? []).filter((t) => sameTags(t.Tags, ident));
  let chosen: string | undefined;
  for (const t of tasks) {
    const d = t.SnapshotTaskDetail;
    const status = d?.Status ?? '';
    let snap: string | undefined;
    if (status === 'completed' && d?.SnapshotId) snap = d.SnapshotId;
    else if ((status === 'active' || status === 'pending') && t.ImportTaskId && !chosen) {
      log.info(
        { region, taskId: t.ImportTaskId },
        `waiting for import ${t.ImportTaskId} of an interrupted run`,
      );
      snap = await waitImportTask(t.ImportTaskId, ec2, region, session, log).catch((err: unknown) => {
        log.warn({ region }, `import ${t.ImportTaskId} of an interrupted run failed: ${errorMessage(err)}`);
        return undefined;
      });
    }
    if (!snap) continue;
    const exists = (await findSnapshotById(ec2, snap)) !== undefined;
    if (!exists) continue;
    if (!chosen) {
      chosen = snap;
      log.info({ region, snapshotId: snap }, `reusing snapshot ${snap} of an interrupted import`);
    } else if (snap !== chosen) {
      log.info({ region, snapshotId: snap }, `removing duplicate snapshot ${snap} of an interrupted import`);
      await deleteSnapshot(ec2, snap, log, { region }).catch(() => {});
    }
  }
  return chosen;
}

async function findSnapshotById(ec2: EC2Client, id: string): Promise<string | undefined> {
  try {
    const r = await ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: [id] }));
    return r.Snapshots?.[0]?.SnapshotId;
  } catch (err) {
    if (errorCode(err)?.startsWith('InvalidSnapshot')) return undefined;
    throw err;
  }
}

/** Remove the temporary buckets (or import/ objects) of this image whose runs are gone; never fails the import. */
async function removeImportLeftovers(
  image: Image,
  plan: ImportPlan,
  s3: S3Client,
  region: string,
  session: AwsSession,
  log: Logger,
): Promise<void> {
  const ident = identityTags(image);
  const prefix = importPrefix(ident.project, ident);
  const now = Date.now();
  try {
    const found = plan.bucket
      ? await findImportObjects(s3, plan.bucket, prefix, now, session.tuning.importTimeoutMs)
      : await findImportBuckets(s3, prefix, now, session.tuning.importTimeoutMs);
    for (const l of found) await removeLeftover(s3, l, log, { region });
  } catch (err) {
    log.warn({ region }, `cannot remove what interrupted imports left in S3: ${describeError(err)}`);
  }
}

/** An AMI of this revision already there (crash after RegisterImage, or a rerun): finish it and use it. */
async function adoptExisting(
  image: Image,
  ec2: EC2Client,
  region: string,
  session: AwsSession,
  log: Logger,
): Promise<ImportResult | undefined> {
  const ident = identityTags(image);
  let candidates = await findImages(ec2, ident);
  for (const bad of candidates.filter(
    (a) => a.State === 'failed' || a.State === 'error' || a.State === 'invalid',
  )) {
    log.warn({ region, imageId: bad.ImageId }, `removing failed AMI ${bad.ImageId} left by an earlier run`);
    await deleteAmi(ec2, bad, log, { region });
  }
  candidates = candidates.filter((a) => a.State === 'available' || a.State === 'pending');
  let ami: Ami | undefined = candidates.find((a) => a.Name === image.imageName);
  for (const other of candidates.filter((a) => a.Name !== image.imageName)) {
    log.warn(
      { region, imageId: other.ImageId },
      `AMI ${other.ImageId} has this image's tags but is named "${other.Name}", not "${image.imageName}"; ignoring it`,
    );
  }
  if (!ami) {
    const byName = await findImageByName(ec2, image.imageName);
    if (byName) {
      const t = fromTags(byName.Tags);
      if (t.project !== undefined && !sameIdentity(t, ident)) {
        throw new UserError(
          `an AMI named ${image.imageName} already exists in ${region} (${byName.ImageId}) with the tags of another image ` +
            `(project ${t.project}, image_key ${t.image_key}, revision ${t.revision}); deregister it or use --revise`,
        );
      }
      ami = byName;
    }
  }
  if (!ami?.ImageId) return undefined;
  const imageId = ami.ImageId;
  const tags = fromTags(ami.Tags);
  const imported = tags.imported || ami.CreationDate || new Date().toISOString();
  log.info({ region, imageId }, `already imported as ${imageId}; not importing again`);
  if (
    tags.import_id !== imageId ||
    tags.import_region !== region ||
    !tags.imported ||
    tags.Name !== image.imageName
  ) {
    const full = imageTagMap(image, { imported, import_id: imageId, import_region: region });
    await ec2.send(new CreateTagsCommand({ Resources: [imageId], Tags: toTags(full) }));
  }
  if (ami.State !== 'available') {
    await waitImageAvailable(ec2, imageId, `${region}: ${imageId}`, session.tuning, log, { region });
  }
  return { import_id: imageId, import_region: region, imported };
}

async function importSnapshot(
  image: Image,
  plan: ImportPlan,
  size: number,
  s3: S3Client,
  ec2: EC2Client,
  region: string,
  session: AwsSession,
  log: Logger,
): Promise<string> {
  const tmp = !plan.bucket;
  // named after the image and this run, so that a later run finds it if this one is killed
  const name = newImportName(identityTags(image));
  const bucket = plan.bucket ?? name;
  const key = tmp ? image.imageFile : `import/${name}/${image.imageFile}`;
  const s3url = `s3://${bucket}/${key}`;
  let bucketCreated = false;
  let uploaded = false;
  try {
    if (tmp) {
      log.info({ region, bucket }, `creating temporary S3 bucket ${bucket}`);
      await s3.send(
        new CreateBucketCommand({
          Bucket: bucket,
          ...(region === 'us-east-1'
            ? {}
            : { CreateBucketConfiguration: { LocationConstraint: region as never } }),
        }),
      );
      bucketCreated = true;
      crashPoint('aws-import:after-bucket');
    }
    log.info(
      { region, size },
      `uploading ${image.imagePath} to ${s3url} (${Math.round(size / 1048576)} MiB)`,
    );
    const started = Date.now();
    const upload = new Upload({
      client: s3,
      params: { Bucket: bucket, Key: key, Body: createReadStream(image.imagePath), ContentLength: size },
      partSize: 64 * 1024 * 1024,
      queueSize: 4,
    });
    let lastPct = -1;
    upload.on('httpUploadProgress', (p) => {
      const pct = p.loaded && size ? Math.floor((p.loaded / size) * 10) * 10 : 0;
      if (pct > lastPct) {
        lastPct = pct;
        log.info({ region }, `upload ${pct}%`);
      }
    });
    await upload.done();
    uploaded = true;
    crashPoint('aws-import:after-upload');
    log.info({ region, seconds: (Date.now() - started) / 1000 }, `uploaded ${s3url}`);

    log.info({ region }, `importing snapshot from ${s3url}`);
    const res = await importCall(() =>
      ec2.send(
        new ImportSnapshotCommand({
          Description: image.imageDescription,
          DiskContainer: {
            Description: image.imageDescription,
            Format: 'VHD',
            UserBucket: { S3Bucket: bucket, S3Key: key },
          },
          Encrypted: plan.encrypted,
          ...(plan.kmsKeyId ? { KmsKeyId: plan.kmsKeyId } : {}),
          TagSpecifications: [
            {
              ResourceType: 'import-snapshot-task',
              Tags: toTags({ ...identityTags(image), Name: image.imageName }),
            },
          ],
        }),
      ),
    );
    const taskId = res.ImportTaskId;
    if (!taskId) throw new Error('ImportSnapshot returned no task id');
    crashPoint('aws-import:after-task');
    const snapshotId = await waitImportTask(taskId, ec2, region, session, log);
    crashPoint('aws-import:after-snapshot');
    return snapshotId;
  } finally {
    // the object and the temporary bucket go in all cases
    if (uploaded || bucketCreated) {
      log.info({ region }, `cleaning up ${s3url}`);
      try {
        await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
      } catch (err) {
        log.warn({ region }, `cannot delete ${s3url}: ${describeError(err)}; delete it by hand`);
      }
    }
    if (bucketCreated) {
      try {
        await s3.send(new DeleteBucketCommand({ Bucket: bucket }));
      } catch (err) {
        log.warn(
          { region },
          `cannot delete temporary bucket ${bucket}: ${describeError(err)}; delete it by hand`,
        );
      }
    }
  }
}

/** ImportSnapshot itself can be refused for the vmimport role: say so. */
async function importCall<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    const hint = vmimportHint(describeError(err));
    if (hint) throw new UserError(`ImportSnapshot refused: ${describeError(err)}; ${hint}`);
    throw err;
  }
}

async function registerImage(
  image: Image,
  plan: ImportPlan,
  ec2: EC2Client,
  region: string,
  snapshotId: string,
  session: AwsSession,
  log: Logger,
): Promise<ImportResult> {
  const imported = new Date().toISOString();
  log.info({ region, snapshotId }, `registering AMI ${image.imageName} from ${snapshotId}`);
  let imageId: string;
  try {
    const res = await ec2.send(
      new RegisterImageCommand({
        Name: image.imageName,
        Description: image.imageDescription,
        Architecture: plan.arch as never,
        BootMode: plan.bootMode as never,
        VirtualizationType: 'hvm',
        EnaSupport: true,
        SriovNetSupport: 'simple',
        RootDeviceName: ROOT_DEVICE,
        BlockDeviceMappings: [
          {
            DeviceName: ROOT_DEVICE,
            Ebs: { SnapshotId: snapshotId, VolumeType: 'gp3', DeleteOnTermination: true },
          },
        ],
        ...(plan.imdsV2 ? { ImdsSupport: 'v2.0' as const } : {}),
        // tagged atomically with registration, so a crash right after still leaves a findable AMI
        TagSpecifications: [
          { ResourceType: 'image', Tags: toTags(imageTagMap(image, { imported, import_region: region })) },
        ],
      }),
    );
    if (!res.ImageId) throw new Error('RegisterImage returned no image id');
    imageId = res.ImageId;
  } catch (err) {
    // the call may have taken effect before failing (e.g. a dropped connection, then a retry that sees the name
    // taken): an AMI of this name on our snapshot is ours
    const existing = await findImageByName(ec2, image.imageName).catch(() => undefined);
    if (existing?.ImageId && snapshotIds(existing).includes(snapshotId)) {
      if (errorCode(err) === 'InvalidAMIName.Duplicate') {
        log.warn(
          { region },
          `RegisterImage reported ${errorCode(err)}, but ${existing.ImageId} is ours; using it`,
        );
        imageId = existing.ImageId;
      } else {
        log.error(
          { region },
          `cannot register AMI: ${describeError(err)}; removing ${existing.ImageId} and ${snapshotId}`,
        );
        await deleteAmi(ec2, existing, log, { region }).catch(() => {});
        throw err;
      }
    } else if (
      errorCode(err) === 'InvalidAMIName.Duplicate' &&
      existing?.ImageId &&
      sameIdentity(fromTags(existing.Tags), identityTags(image))
    ) {
      // another import of this image registered it at the same time: adopt the winner's AMI, drop our snapshot
      log.warn(
        { region, imageId: existing.ImageId },
        `another import of this image registered ${existing.ImageId} at the same time; using it`,
      );
      await deleteSnapshot(ec2, snapshotId, log, { region }).catch((e: unknown) =>
        log.warn({ region }, `cannot delete snapshot ${snapshotId}: ${errorMessage(e)}`),
      );
      const done = await waitImageAvailable(
        ec2,
        existing.ImageId,
        `${region}: ${existing.ImageId}`,
        session.tuning,
        log,
        {
          region,
        },
      );
      const tags = fromTags(done.Tags);
      return {
        import_id: existing.ImageId,
        import_region: region,
        imported: tags.imported || done.CreationDate || imported,
      };
    } else {
      log.error({ region }, `cannot register AMI: ${describeError(err)}; removing snapshot ${snapshotId}`);
      await deleteSnapshot(ec2, snapshotId, log, { region }).catch((e: unknown) =>
        log.warn({ region }, `cannot delete snapshot ${snapshotId}: ${errorMessage(e)}`),
      );
      throw err;
    }
  }

  try {
    const full = imageTagMap(image, { imported, import_id: imageId, import_region: region });
    await ec2.send(new CreateTagsCommand({ Resources: [imageId], Tags: toTags(full) }));
    await waitImageAvailable(ec2, imageId, `${region}: ${imageId}`, session.tuning, log, { region });
  } catch (err) {
    log.error(
      { region, imageId },
      `AMI ${imageId} unusable: ${describeError(err)}; removing it and ${snapshotId}`,
    );
    await ec2.send(new DeregisterImageCommand({ ImageId: imageId })).catch(() => {});
    await deleteSnapshot(ec2, snapshotId, log, { region }).catch(() => {});
    throw err;
  }
  log.info({ region, imageId }, `imported as ${imageId}`);
  return { import_id: imageId, import_region: region, imported };
}

/** Wait for an import task; its snapshot id, or an error that says what failed (and why, for the vmimport role). */
async function waitImportTask(
  taskId: string,
  ec2: EC2Client,
  region: string,
  session: AwsSession,
  log: Logger,
): Promise<string> {
  return pollUntil<string>(
    `${region}: snapshot import ${taskId}`,
    async () => {
      const d = await ec2.send(new DescribeImportSnapshotTasksCommand({ ImportTaskIds: [taskId] }));
      const detail = d.ImportSnapshotTasks?.[0]?.SnapshotTaskDetail;
      const status = detail?.Status ?? 'unknown';
      if (status === 'completed' && detail?.SnapshotId) return { done: true, value: detail.SnapshotId };
      if (status === 'deleted' || status === 'deleting' || status === 'unknown') {
        const why = detail?.StatusMessage ?? '';
        const hint = vmimportHint(why);
        throw new Error(
          `snapshot import ${taskId} failed: ${status}${why ? ` - ${why}` : ''}${hint ? `; ${hint}` : ''}`,
        );
      }
      const pct = detail?.Progress ? ` ${detail.Progress}%` : '';
      return {
        done: false,
        progress: `${status}${detail?.StatusMessage ? ` (${detail.StatusMessage})` : ''}${pct}`,
      };
    },
    {
      initialMs: session.tuning.pollInitialMs,
      maxMs: session.tuning.pollMaxMs,
      timeoutMs: session.tuning.importTimeoutMs,
    },
    log,
    { region, taskId },
  );
}
