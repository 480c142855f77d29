/**
 * AWS publish: copy the imported AMI to every target region at once, wait for each copy with backoff, then tag it
 * (and its snapshot), set its description, launch permissions and deprecation time. A region that fails does not
 * stop the others; it is reported in the result's failures.
 */
import {
  CopyImageCommand,
  CreateTagsCommand,
  type EC2Client,
  EnableImageDeprecationCommand,
  ModifyImageAttributeCommand,
  ResetImageAttributeCommand,
} from '@aws-sdk/client-ec2';
import pLimit from 'p-limit';
import type { Logger } from 'pino';
import type { Image } from '../../state/image.js';
import { UserError } from '../../util/errors.js';
import { isPlaceholderProject, placeholderWarning } from '../project.js';
import type { CloudContext, ImportResult, PublishResult, RegionFailure } from '../types.js';
import {
  type Ami,
  deleteAmi,
  describeError,
  describeImage,
  errorCode,
  findImageByName,
  findImages,
  fromTags,
  ImageFailedError,
  identityTags,
  imageTagMap,
  snapshotIds,
  toTags,
  waitImageAvailable,
} from './ec2.js';
import { importPlan } from './import.js';
import type { AwsSession } from './session.js';

const DAY = 86_400_000;
/** AWS: public AMIs can be deprecated at most 2 years ahead, others 10 years; keep a day of margin */
export const PUBLIC_DEPRECATION_LIMIT_MS = 730 * DAY - DAY;
export const PRIVATE_DEPRECATION_LIMIT_MS = 3650 * DAY - DAY;

export interface LaunchPermissions {
  public: boolean;
  users: string[];
}

export function launchPermissions(image: Image): LaunchPermissions {
  const access = image.config.access ?? {};
  const users: string[] = [];
  // (the keys are checked at `configs`: PUBLIC or 12-digit account ids)
  for (const [k, v] of Object.entries(access)) if (k !== 'PUBLIC' && v) users.push(k);
  return { public: Boolean(access.PUBLIC), users: users.sort() };
}

/** Target regions from `regions` (ALL = every enabled region), and failures for listed regions not enabled. */
export function targetRegions(
  image: Image,
  enabled: readonly string[],
  sourceRegion: string,
  log: Logger,
): { targets: string[]; failures: RegionFailure[] } {
  const conf = image.config.regions ?? {};
  const failures: RegionFailure[] = [];
  let wanted: string[];
  if (conf.ALL) {
    wanted = [...enabled];
  } else {
    wanted = Object.entries(conf)
      .filter(([k, v]) => k !== 'ALL' && v)
      .map(([k]) => k);
  }
  if (wanted.length === 0) {
    log.warn(
      `no regions configured (regions.ALL or regions.<name> = true): publishing only in ${sourceRegion}`,
    );
    wanted = [sourceRegion];
  }
  const on = new Set(enabled);
  const targets: string[] = [];
  for (const r of [...new Set(wanted)].sort()) {
    if (on.has(r) || r === sourceRegion) targets.push(r);
    else {
      failures.push({
        region: r,
        code: 'RegionNotEnabled',
        error: `region ${r} is not enabled for this account (opt in, or remove regions.${r})`,
      });
    }
  }
  return { targets, failures };
}

/**
 * When to deprecate: end_of_life at 23:59 UTC, capped to what AWS accepts: at most 2 years (public AMIs; 10 for
 * others) after the image's creation date in that region (`created`; now when unknown). A warning says why the
 * date is not end_of_life.
 */
export function deprecationTime(
  endOfLife: string | undefined,
  isPublic: boolean,
  now: Date,
  created: Date = now,
): { at?: Date; warning?: string } {
  if (!endOfLife) return { warning: 'no end_of_life: deprecation time not set' };
  const at = Date.parse(/^\d{4}-\d{2}-\d{2}$/.test(endOfLife) ? `${endOfLife}T23:59:00Z` : endOfLife);
  if (Number.isNaN(at))
    return { warning: `end_of_life "${endOfLife}" is not a date: deprecation time not set` };
  const floorMinute = (ms: number) => new Date(Math.floor(ms / 60_000) * 60_000);
  if (at <= now.getTime() + 60_000) {
    return {
      at: floorMinute(now.getTime() + 3600_000),
      warning: `end_of_life ${endOfLife} has passed: deprecating in an hour`,
    };
  }
  // AWS: public AMIs at most 2 years after their creation date, others 10 years from now
  const base = isPublic ? Math.min(created.getTime(), now.getTime()) : now.getTime();
  const limit = base + (isPublic ? PUBLIC_DEPRECATION_LIMIT_MS : PRIVATE_DEPRECATION_LIMIT_MS);
  if (at > limit) {
    const capped = floorMinute(limit);
    if (capped.getTime() <= now.getTime() + 60_000) {
      return {
        at: floorMinute(now.getTime() + 3600_000),
        warning: `the image was created ${created.toISOString()}: AWS allows no later deprecation; deprecating in an hour`,
      };
    }
    return {
      at: capped,
      warning:
        `end_of_life ${endOfLife} is beyond AWS's ${isPublic ? '2-year limit for public' : '10-year limit for'} AMIs ` +
        `(counted from the image's creation date): deprecation set to ${capped.toISOString()} instead`,
    };
  }
  return { at: new Date(at) };
}

/** What every stage of one publish reads: the image, its source AMI and what applies to every region. */
export interface PublishJob {
  image: Image;
  session: AwsSession;
  log: Logger;
  /** the identity tags (project, image_key, revision) every copy carries */
  ident: Record<string, string>;
  encrypted: boolean;
  kmsKeyId?: string | undefined;
  perms: LaunchPermissions;
  /** the source AMI, available, in `sourceRegion` */
  source: Ami;
  sourceRegion: string;
  /** the import fields to tag on every copy when publish had to import again */
  reimportTags: Record<string, string>;
  /** the deprecation time computed from end_of_life (each region recomputes it from its creation date) */
  deprecation: { at?: Date; warning?: string };
}

/** One region's work, filled in by the region stages one after the other. */
export interface RegionWork {
  region: string;
  ec2: EC2Client;
  /** the usable (available or pending) AMIs with this image's identity tags, found by 'remove failed copies' */
  copies?: Ami[];
  /** the AMI in this region once `copy` found or made it */
  ami?: Ami;
  published?: string;
  failure?: RegionFailure;
  warnings: string[];
}

interface RegionOutcome {
  region: string;
  imageId?: string;
  published?: string;
  failure?: RegionFailure;
  warnings: string[];
}

export type ImportFn = (image: Image, ctx: CloudContext) => Promise<ImportResult>;

/**
 * Publish an imported image: find (or import again) the source AMI, then run the region stages in every target
 * region at once, then collect the outcome. A failed region does not stop the others.
 */
export async function publishAws(
  image: Image,
  ctx: CloudContext,
  session: AwsSession,
  reimport: ImportFn,
): Promise<PublishResult> {
  const settings = importPlan(image);
  const log = ctx.log.child({ image: image.imageName });
  if (isPlaceholderProject(image.config.project)) log.warn(placeholderWarning(image.config.project));
  const { source, sourceRegion, reimported } = await availableSource(image, ctx, session, reimport, log);
  log.info(
    { region: sourceRegion, imageId: source.ImageId },
    `publishing from ${sourceRegion}/${source.ImageId}`,
  );

  const enabled = await session.enabledRegions();
  const { targets, failures: regionFailures } = targetRegions(image, enabled, sourceRegion, log);
  log.info({ regions: targets.length }, `publishing to ${targets.length} region(s): ${targets.join(' ')}`);

  const job = publishJob(image, session, log, settings, { source, sourceRegion, reimported });
  const warnings: string[] = [];
  if (job.deprecation.warning) {
    log.warn(job.deprecation.warning);
    warnings.push(job.deprecation.warning);
  }
  const outcomes = await publishRegions(job, targets);
  return publishResult(outcomes, regionFailures, warnings, reimported);
}

/** The publish job of an image whose source AMI is known and available. */
export function publishJob(
  image: Image,
  session: AwsSession,
  log: Logger,
  plan: { encrypted: boolean; kmsKeyId?: string | undefined },
  from: { source: Ami; sourceRegion: string; reimported?: ImportResult | undefined },
  now: Date = new Date(),
): PublishJob {
  const { source, sourceRegion, reimported } = from;
  const perms = launchPermissions(image);
  return {
    image,
    session,
    log,
    ident: identityTags(image),
    encrypted: plan.encrypted,
    kmsKeyId: plan.kmsKeyId,
    perms,
    source,
    sourceRegion,
    reimportTags: reimported
      ? {
          imported: reimported.imported,
          import_id: reimported.import_id,
          import_region: reimported.import_region,
        }
      : {},
    deprecation: deprecationTime(image.config.end_of_life, perms.public, now),
  };
}

/**
 * The source: the AMI of this revision in the import region, imported again when missing or renamed, and
 * waited for until available.
 */
export async function availableSource(
  image: Image,
  ctx: CloudContext,
  session: AwsSession,
  reimport: ImportFn,
  log: Logger,
): Promise<{ source: Ami; sourceRegion: string; reimported?: ImportResult }> {
  let sourceRegion = image.state.import_region || (await session.defaultRegion());
  let source: Ami | undefined = (await findImages(session.ec2(sourceRegion), identityTags(image))).find(
    (a) => a.State === 'available' || a.State === 'pending',
  );
  let reimported: ImportResult | undefined;
  if (!source || source.Name !== image.imageName) {
    log.warn(
      source
        ? `source AMI ${source.ImageId} is named "${source.Name}", not "${image.imageName}": importing again`
        : `no source AMI for ${image.imageName} in ${sourceRegion}: importing again`,
    );
    reimported = await reimport(image, ctx);
    sourceRegion = reimported.import_region;
    source = await describeImage(session.ec2(sourceRegion), reimported.import_id);
    if (!source || source.Name !== image.imageName) {
      throw new Error(`unable to re-import the source AMI of ${image.imageName}`);
    }
  }
  const sourceId = source.ImageId!;
  if (source.State !== 'available') {
    source = await waitImageAvailable(
      session.ec2(sourceRegion),
      sourceId,
      `${sourceRegion}: ${sourceId}`,
      session.tuning,
      log,
      { region: sourceRegion },
    );
  }
  return reimported ? { source, sourceRegion, reimported } : { source, sourceRegion };
}

/** One stage of a region's publish; it reads the job and fills in the region's work. */
export interface RegionStage {
  name: string;
  run(job: PublishJob, work: RegionWork): Promise<void>;
}

/**
 * The region stages, one after the other. In the source region the AMI is the source itself (no copy, no
 * wait).
 */
export const REGION_STAGES: readonly RegionStage[] = [
  { name: 'remove failed copies', run: removeFailedCopies },
  { name: 'copy', run: copyToRegion },
  { name: 'wait available', run: waitCopyAvailable },
  { name: 'tag', run: tagCopy },
  { name: 'launch permissions', run: setLaunchPermissions },
  { name: 'deprecate', run: setDeprecation },
];

/** Run the region stages in every target region, `tuning.concurrency` regions at a time. */
async function publishRegions(job: PublishJob, targets: string[]): Promise<RegionOutcome[]> {
  const { log, session } = job;
  const limit = pLimit(session.tuning.concurrency);
  let done = 0;
  return Promise.all(
    targets.map((region) =>
      limit(async (): Promise<RegionOutcome> => {
        const out = await publishRegion(job, region).catch(
          (err: unknown): RegionOutcome => ({
            region,
            failure: {
              region,
              error: describeError(err),
              code: errorCode(err) ?? (err instanceof ImageFailedError ? 'ImageFailed' : undefined),
            },
            warnings: [],
          }),
        );
        done++;
        if (out.failure)
          log.error({ region }, `${region}: failed (${done}/${targets.length}): ${out.failure.error}`);
        else
          log.info(
            { region, imageId: out.imageId },
            `${region}: published ${out.imageId} (${done}/${targets.length})`,
          );
        return out;
      }),
    ),
  );
}

/** One region: the region stages in order; a stage that throws fails the region. */
export async function publishRegion(job: PublishJob, region: string): Promise<RegionOutcome> {
  const work: RegionWork = { region, ec2: job.session.ec2(region), warnings: [] };
  if (region === job.sourceRegion) work.ami = job.source;
  for (const stage of REGION_STAGES) await stage.run(job, work);
  return {
    region,
    imageId: work.ami?.ImageId,
    published: work.published,
    failure: work.failure,
    warnings: work.warnings,
  };
}

function isCopy(job: PublishJob, work: RegionWork): boolean {
  return work.region !== job.sourceRegion;
}

function regionAmi(work: RegionWork): Ami {
  if (!work.ami?.ImageId) throw new Error(`${work.region}: no AMI (the copy stage did not run)`);
  return work.ami;
}

/** Stage 'remove failed copies': a failed copy left by an earlier run keeps its name taken. */
export async function removeFailedCopies(job: PublishJob, work: RegionWork): Promise<void> {
  if (!isCopy(job, work)) return;
  const { region, ec2 } = work;
  const fields = { region };
  const found = await findImages(ec2, job.ident);
  for (const bad of found.filter(
    (a) => a.State === 'failed' || a.State === 'error' || a.State === 'invalid',
  )) {
    job.log.warn(fields, `${region}: removing failed copy ${bad.ImageId} left by an earlier run`);
    await deleteAmi(ec2, bad, job.log, fields);
  }
  work.copies = found.filter((a) => a.State === 'available' || a.State === 'pending');
}

/**
 * Stage 'copy': the copy of this revision already in the region (from an earlier or a concurrent run), or a
 * new CopyImage of the source, tagged with the identity tags at once.
 */
export async function copyToRegion(job: PublishJob, work: RegionWork): Promise<void> {
  if (!isCopy(job, work)) return;
  const { image, log, source: src, sourceRegion } = job;
  const { region, ec2 } = work;
  const fields = { region };
  const usable =
    work.copies ??
    (await findImages(ec2, job.ident)).filter((a) => a.State === 'available' || a.State === 'pending');
  const existing = usable.find((a) => a.Name === image.imageName);
  for (const other of usable.filter((a) => a.Name !== image.imageName)) {
    log.warn(
      fields,
      `${region}: ${other.ImageId} has this image's tags but is named "${other.Name}"; copying ${image.imageName} anew`,
    );
  }
  if (existing?.ImageId) {
    log.info(fields, `${region}: already there as ${existing.ImageId} (${existing.State})`);
    work.ami = existing;
    return;
  }
  const idTags = toTags({ ...job.ident, Name: image.imageName });
  const res = await adoptOnDuplicate(job, ec2, region, () =>
    ec2.send(
      new CopyImageCommand({
        Name: src.Name,
        Description: src.Description,
        SourceImageId: src.ImageId,
        SourceRegion: sourceRegion,
        Encrypted: job.encrypted,
        ...(job.kmsKeyId ? { KmsKeyId: job.kmsKeyId } : {}),
        // identity tags at once: a rerun after a crash finds the copy in progress instead of copying again
        TagSpecifications: [
          { ResourceType: 'image', Tags: idTags },
          { ResourceType: 'snapshot', Tags: idTags },
        ],
      }),
    ),
  );
  if ('adopted' in res) {
    log.warn(
      { ...fields, imageId: res.adopted.ImageId },
      `${region}: another publish of this image copied it at the same time (${res.adopted.ImageId}); using its copy`,
    );
    work.ami = res.adopted;
  } else {
    if (!res.ImageId) throw new Error('CopyImage returned no image id');
    log.info({ ...fields, imageId: res.ImageId }, `${region}: copying as ${res.ImageId}`);
    work.ami = { ImageId: res.ImageId, State: 'pending', Name: src.Name };
  }
}

/**
 * Two publishes of one image at once: the loser's CopyImage fails with InvalidAMIName.Duplicate. The winner's
 * copy carries this image's identity tags from the start (TagSpecifications): found by name and tags, it is
 * adopted. An AMI of that name with other tags is a real conflict.
 */
async function adoptOnDuplicate<T>(
  job: PublishJob,
  ec2: EC2Client,
  region: string,
  call: () => Promise<T>,
): Promise<T | { adopted: Ami }> {
  const { image, ident } = job;
  try {
    return await call();
  } catch (err) {
    if (errorCode(err) !== 'InvalidAMIName.Duplicate') throw err;
    const winner = await findImageByName(ec2, image.imageName);
    const t = fromTags(winner?.Tags);
    if (
      !winner?.ImageId ||
      t.project !== ident.project ||
      t.image_key !== ident.image_key ||
      t.revision !== ident.revision
    ) {
      throw new UserError(
        `${region}: an AMI named ${image.imageName} already exists${winner?.ImageId ? ` (${winner.ImageId})` : ''} ` +
          `with the tags of another image (project ${t.project ?? '-'}, image_key ${t.image_key ?? '-'}, revision ` +
          `${t.revision ?? '-'}); deregister it or use --revise`,
      );
    }
    return { adopted: winner };
  }
}

/** Stage 'wait available': wait for the copy; a copy that failed is removed so the next run can copy again. */
export async function waitCopyAvailable(job: PublishJob, work: RegionWork): Promise<void> {
  if (!isCopy(job, work)) return;
  const { region, ec2 } = work;
  const ami = regionAmi(work);
  if (ami.State === 'available') return;
  const fields = { region };
  try {
    work.ami = await waitImageAvailable(
      ec2,
      ami.ImageId!,
      `${region}: ${ami.ImageId}`,
      job.session.tuning,
      job.log,
      fields,
    );
  } catch (err) {
    if (err instanceof ImageFailedError) {
      const failed = await describeImage(ec2, err.imageId).catch(() => undefined);
      if (failed) await deleteAmi(ec2, failed, job.log, fields).catch(() => {});
    }
    throw err;
  }
}

/**
 * Stage 'tag': the image's tags on the AMI and its snapshot (`published` kept from an earlier run), and its
 * description.
 */
export async function tagCopy(job: PublishJob, work: RegionWork): Promise<void> {
  const { image, log } = job;
  const { region, ec2 } = work;
  const ami = regionAmi(work);
  const imageId = ami.ImageId!;
  const published = fromTags(ami.Tags).published || new Date().toISOString();
  work.published = published;
  const tags = imageTagMap(image, { ...job.reimportTags, published });
  log.debug({ region, imageId }, `${region}: tagging ${imageId} and its snapshot`);
  await ec2.send(new CreateTagsCommand({ Resources: [imageId, ...snapshotIds(ami)], Tags: toTags(tags) }));
  if (ami.Description !== image.imageDescription) {
    await ec2.send(
      new ModifyImageAttributeCommand({ ImageId: imageId, Description: { Value: image.imageDescription } }),
    );
  }
}

/**
 * Stage 'launch permissions': reset, then add public and the listed accounts. A refusal (e.g. the public AMI
 * quota) fails the region but leaves the AMI, so the deprecation stage still runs.
 */
export async function setLaunchPermissions(job: PublishJob, work: RegionWork): Promise<void> {
  const { perms } = job;
  const { region, ec2 } = work;
  const imageId = regionAmi(work).ImageId!;
  await ec2.send(new ResetImageAttributeCommand({ ImageId: imageId, Attribute: 'launchPermission' }));
  const add = [
    ...(perms.public ? [{ Group: 'all' as const }] : []),
    ...perms.users.map((UserId) => ({ UserId })),
  ];
  if (add.length === 0) return;
  try {
    await ec2.send(new ModifyImageAttributeCommand({ ImageId: imageId, LaunchPermission: { Add: add } }));
  } catch (err) {
    const code = errorCode(err);
    work.failure = {
      region,
      code,
      error:
        code === 'ResourceLimitExceeded'
          ? `public AMI quota reached in ${region}: ${imageId} exists but is NOT public; request a quota increase ` +
            `(or deregister old public AMIs) and publish again (${describeError(err)})`
          : `cannot set launch permissions of ${imageId}: ${describeError(err)}`,
    };
  }
}

/**
 * Stage 'deprecate': the deprecation time, recomputed from the AMI's creation date in this region (AWS counts
 * its limit from there, not from now). A refusal is a warning.
 */
export async function setDeprecation(job: PublishJob, work: RegionWork): Promise<void> {
  const { deprecation, log } = job;
  if (!deprecation.at) return;
  const { region, ec2 } = work;
  const ami = regionAmi(work);
  const imageId = ami.ImageId!;
  const fields = { region, imageId };
  const isPublic = job.perms.public && !work.failure;
  const created = ami.CreationDate ? new Date(ami.CreationDate) : new Date();
  const d = deprecationTime(job.image.config.end_of_life, isPublic, new Date(), created);
  const at = d.at ?? deprecation.at;
  if (d.warning && d.warning !== deprecation.warning) {
    const w = `${region}: ${d.warning}`;
    log.warn(fields, w);
    work.warnings.push(w);
  }
  try {
    await ec2.send(new EnableImageDeprecationCommand({ ImageId: imageId, DeprecateAt: at }));
  } catch (err) {
    const w = `${region}: cannot set deprecation time of ${imageId}: ${describeError(err)}`;
    log.warn(fields, w);
    work.warnings.push(w);
  }
}

/** The publish result: artifacts and failures by region, `published` = the earliest region's time. */
function publishResult(
  outcomes: RegionOutcome[],
  regionFailures: RegionFailure[],
  warnings: string[],
  reimported: ImportResult | undefined,
): PublishResult {
  const artifacts: Record<string, string> = {};
  const failures: RegionFailure[] = [...regionFailures];
  let first: string | undefined;
  for (const o of outcomes.sort((a, b) => a.region.localeCompare(b.region))) {
    if (o.imageId) artifacts[o.region] = o.imageId;
    if (o.failure) failures.push(o.failure);
    warnings.push(...o.warnings);
    if (o.published && (!first || o.published < first)) first = o.published;
  }
  failures.sort((a, b) => a.region.localeCompare(b.region));
  const result: PublishResult = { artifacts, failures, warnings };
  if (failures.length === 0 && Object.keys(artifacts).length > 0) result.published = first;
  if (reimported) result.reimported = reimported;
  return result;
}
