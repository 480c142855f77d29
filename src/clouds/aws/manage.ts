/** AWS rollback (delete), finding the latest import, and listing/removing images for prune. */
import {
  DescribeImportSnapshotTasksCommand,
  DescribeSnapshotsCommand,
  type EC2Client,
  type Snapshot,
} from '@aws-sdk/client-ec2';
import pLimit from 'p-limit';
import type { Image, ImageTags } from '../../state/image.js';
import { errorMessage, UserError } from '../../util/errors.js';
import type { CloudContext, CloudImage } from '../types.js';
import {
  type Ami,
  deleteAmi,
  deleteSnapshot,
  describeImage,
  findImages,
  findSnapshots,
  fromTags,
  identityTags,
  snapshotIds,
} from './ec2.js';
import { findImportBuckets, importPrefix, removeLeftover } from './leftovers.js';
import type { AwsSession } from './session.js';

/**
 * Rollback of an unpublished import: deregister the AMI and delete its snapshot, in the import region and in any
 * region a failed publish already copied it to. Refuses an AMI that carries another image's tags.
 */
export async function deleteAws(
  image: Image,
  importId: string,
  ctx: CloudContext,
  session: AwsSession,
): Promise<void> {
  const log = ctx.log.child({ image: image.imageName });
  const ident = identityTags(image);
  const importRegion = image.state.import_region || (await session.defaultRegion());
  const ec2 = session.ec2(importRegion);
  const ami = await describeImage(ec2, importId);
  if (ami) {
    const t = fromTags(ami.Tags);
    if (t.project !== ident.project || t.image_key !== ident.image_key || t.revision !== ident.revision) {
      throw new UserError(
        `${importRegion}/${importId} is not tagged as ${image.imageName} (project ${t.project ?? '-'}, ` +
          `image_key ${t.image_key ?? '-'}, revision ${t.revision ?? '-'}); not deleting it`,
      );
    }
    await deleteAmi(ec2, ami, log, { region: importRegion });
  } else {
    log.warn({ region: importRegion }, `${importId} is already gone from ${importRegion}`);
  }
  // copies left by a publish that failed part-way, and snapshots left by a crash before RegisterImage
  const regions = new Set([importRegion, ...Object.keys(image.state.artifacts ?? {})]);
  for (const region of regions) {
    const rEc2 = session.ec2(region);
    for (const other of await findImages(rEc2, ident)) {
      await deleteAmi(rEc2, other, log, { region });
    }
    for (const s of await findSnapshots(rEc2, ident)) {
      if (s.SnapshotId) {
        await deleteSnapshot(rEc2, s.SnapshotId, log, { region }).catch((err: unknown) =>
          log.warn({ region }, `cannot delete snapshot ${s.SnapshotId}: ${errorMessage(err)}`),
        );
      }
    }
  }
}

function tagsToImageTags(t: Record<string, string>): ImageTags {
  const { Name: _name, ...rest } = t;
  return { ...(rest as unknown as ImageTags), revision: Number(t.revision) };
}

/** Tags of the newest AMI of this variant (highest revision, then newest) in the default region. */
export async function latestAws(
  image: Image,
  ctx: CloudContext,
  session: AwsSession,
): Promise<ImageTags | undefined> {
  const region = await session.defaultRegion();
  const { project, image_key } = identityTags(image);
  const found = (await findImages(session.ec2(region), { project, image_key })).filter(
    (a) => a.State !== 'failed' && a.State !== 'deregistered',
  );
  let best: Ami | undefined;
  let bestRev = -1;
  for (const a of found) {
    const rev = Number(fromTags(a.Tags).revision);
    if (!Number.isFinite(rev)) continue;
    if (rev > bestRev) {
      best = a;
      bestRev = rev;
    }
  }
  if (!best) return undefined;
  ctx.log.debug({ region, imageId: best.ImageId }, `latest import of ${image_key}: r${bestRev}`);
  return tagsToImageTags(fromTags(best.Tags));
}

/** Every AMI tagged with `project` in every enabled region, plus snapshots no AMI uses any more. */
export async function listAws(
  filter: { project: string },
  _ctx: CloudContext,
  session: AwsSession,
): Promise<CloudImage[]> {
  const regions = await session.enabledRegions();
  const failed: string[] = [];
  const limit = pLimit(8);
  const perRegion = await Promise.all(
    regions.map((region) =>
      limit(async (): Promise<CloudImage[]> => {
        const ec2 = session.ec2(region);
        try {
          const amis = await findImages(ec2, { project: filter.project });
          const used = new Set(amis.flatMap(snapshotIds));
          const out: CloudImage[] = amis.map((a) => ({
            region,
            id: a.ImageId!,
            name: a.Name ?? '',
            tags: fromTags(a.Tags),
            public: Boolean(a.Public),
            ...(a.CreationDate ? { created: a.CreationDate } : {}),
            ...(a.LastLaunchedTime ? { lastLaunched: a.LastLaunchedTime } : {}),
            snapshotIds: snapshotIds(a),
            kind: 'image' as const,
          }));
          out.push(...(await importLeftovers(ec2, session, region, filter.project, used)));
          for (const s of await findSnapshots(ec2, { project: filter.project })) {
            if (!s.SnapshotId || used.has(s.SnapshotId)) continue;
            const tags = fromTags(s.Tags);
            out.push({
              region,
              id: s.SnapshotId,
              name: tags.Name ?? '',
              tags,
              public: false,
              ...(s.StartTime ? { created: new Date(s.StartTime).toISOString() } : {}),
              snapshotIds: [s.SnapshotId],
              kind: 'snapshot',
            });
          }
          return out;
        } catch (err) {
          failed.push(`${region}: ${errorMessage(err)}`);
          return [];
        }
      }),
    ),
  );
  // a region that could not be listed must not look like a region with nothing in it (prune decides on this)
  if (failed.length > 0) throw new UserError(`cannot list images in ${failed.sort().join('; ')}`);
  return perRegion.flat();
}

/**
 * What killed imports of the project left in a region: temporary import buckets (and import/ directories of a
 * configured bucket are found by the next import of the image), and snapshots of this project's import tasks that
 * never got tagged and that no AMI uses, once older than the import timeout.
 */
async function importLeftovers(
  ec2: EC2Client,
  session: AwsSession,
  region: string,
  project: string,
  used: ReadonlySet<string>,
): Promise<CloudImage[]> {
  const out: CloudImage[] = [];
  const now = Date.now();
  const timeout = session.tuning.importTimeoutMs;
  // buckets are global: list them from the default region only
  if (region === (await session.defaultRegion())) {
    for (const b of await findImportBuckets(session.s3(region), importPrefix(project), now, timeout)) {
      out.push({
        region,
        id: b.bucket,
        name: b.bucket,
        tags: { project },
        public: false,
        ...(b.created ? { created: b.created } : {}),
        snapshotIds: [],
        kind: 'import-bucket',
        leftover: true,
      });
    }
  }
  const tasks = (await ec2.send(new DescribeImportSnapshotTasksCommand({}))).ImportSnapshotTasks ?? [];
  for (const t of tasks) {
    const tags = fromTags(t.Tags);
    const snap = t.SnapshotTaskDetail?.SnapshotId;
    if (tags.project !== project || !snap || used.has(snap)) continue;
    let s: Snapshot | undefined;
    try {
      s = (await ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: [snap] }))).Snapshots?.[0];
    } catch {
      continue; // gone
    }
    const started = s?.StartTime ? new Date(s.StartTime).getTime() : now;
    if (!s || (s.Tags ?? []).length > 0 || now - started < timeout) continue;
    out.push({
      region,
      id: snap,
      name: tags.Name ?? '',
      tags,
      public: false,
      created: new Date(started).toISOString(),
      snapshotIds: [snap],
      kind: 'snapshot',
      leftover: true,
    });
  }
  return out;
}

export async function deleteCloudImageAws(
  img: CloudImage,
  ctx: CloudContext,
  session: AwsSession,
): Promise<void> {
  if (img.kind === 'import-bucket') {
    await removeLeftover(session.s3(img.region), { bucket: img.id }, ctx.log, { region: img.region });
    return;
  }
  const ec2 = session.ec2(img.region);
  if (img.kind === 'snapshot' || img.id.startsWith('snap-')) {
    await deleteSnapshot(ec2, img.id, ctx.log, { region: img.region });
    return;
  }
  const ami = await describeImage(ec2, img.id);
  if (!ami) {
    for (const s of img.snapshotIds) await deleteSnapshot(ec2, s, ctx.log, { region: img.region });
    return;
  }
  await deleteAmi(ec2, ami, ctx.log, { region: img.region });
}
