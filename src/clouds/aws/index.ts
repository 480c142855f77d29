/** The AWS plugin: import (VHD -> snapshot -> AMI), publish (copy to regions), delete, list. */
import type { Image } from '../../state/image.js';
import type { CloudAction, CloudContext, CloudPlugin } from '../types.js';
import { createImdsService } from './imds.js';
import type { AwsSession } from './session.js';
import { checkAwsConfig } from './settings.js';

/** The implementation (and the AWS SDK it pulls in) loads on first use, so runs without AWS work start fast. */
async function impl() {
  const [imp, manage, publish, session] = await Promise.all([
    import('./import.js'),
    import('./manage.js'),
    import('./publish.js'),
    import('./session.js'),
  ]);
  return { ...imp, ...manage, ...publish, ...session };
}
type Impl = Awaited<ReturnType<typeof impl>>;

async function withSession<T>(ctx: CloudContext, fn: (s: AwsSession, m: Impl) => Promise<T>): Promise<T> {
  const m = await impl();
  const { session, release } = m.openSession(ctx);
  try {
    return await fn(session, m);
  } finally {
    release();
  }
}

function fill(template: string, values: Record<string, string>): string {
  return template.replace(/\{(\w+)\}/g, (whole, k: string) => values[k] ?? whole);
}

const REGION_URL =
  'https://{region}.console.aws.amazon.com/ec2/home?region={region}#ImageDetails:imageId={image_id}';
const LAUNCH_URL =
  'https://{region}.console.aws.amazon.com/ec2/home?region={region}#LaunchInstances:ami={image_id}';

export function createAwsPlugin(): CloudPlugin {
  const plugin: CloudPlugin = {
    name: 'aws',
    actions: new Set<CloudAction>(['import', 'publish', 'delete', 'list']),
    checkConfig: checkAwsConfig,
    latestImported: (image, ctx) => withSession(ctx, (s, m) => m.latestAws(image, ctx, s)),
    importImage: (image, ctx) => withSession(ctx, (s, m) => m.importAws(image, ctx, s)),
    publishImage: (image, ctx) =>
      withSession(ctx, (s, m) => m.publishAws(image, ctx, s, (img, c) => m.importAws(img, c, s))),
    deleteImage: (image, importId, ctx) => withSession(ctx, (s, m) => m.deleteAws(image, importId, ctx, s)),
    listImages: (filter, ctx) => withSession(ctx, (s, m) => m.listAws(filter, ctx, s)),
    deleteCloudImage: (img, ctx) => withSession(ctx, (s, m) => m.deleteCloudImageAws(img, ctx, s)),
    regionUrl: (image: Image, region: string, imageId: string) =>
      fill(typeof image.config.cloud_region_url === 'string' ? image.config.cloud_region_url : REGION_URL, {
        region,
        image_id: imageId,
      }),
    launchUrl: (image: Image, region: string, imageId: string) =>
      fill(typeof image.config.cloud_launch_url === 'string' ? image.config.cloud_launch_url : LAUNCH_URL, {
        region,
        image_id: imageId,
      }),
    // the boot test serves instance data the way EC2 does (IMDSv2), not as a NoCloud seed
    bootTestMetadata: (data) => createImdsService(data),
  };
  return plugin;
}
