/** The AWS plugin: import (VHD -> snapshot -> AMI), publish (copy to regions), delete, list. */
import type { Image } from '../../src/state/image.js';
import type { CloudAction, CloudContext, CloudPlugin } from '../types.js';
import { importAws } from './import.js';
import { deleteAws, deleteCloudImageAws, latestAws, listAws } from './manage.js';
import { publishAws } from './publish.js';
import { type AwsSession, openSession } from './session.js';

async function withSession<T>(ctx: CloudContext, fn: (s: AwsSession) => Promise<T>): Promise<T> {
  const { session, release } = openSession(ctx);
  try {
    return await fn(session);
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
    latestImported: (image, ctx) => withSession(ctx, (s) => latestAws(image, ctx, s)),
    importImage: (image, ctx) => withSession(ctx, (s) => importAws(image, ctx, s)),
    publishImage: (image, ctx) =>
      withSession(ctx, (s) => publishAws(image, ctx, s, (img, c) => importAws(img, c, s))),
    deleteImage: (image, importId, ctx) => withSession(ctx, (s) => deleteAws(image, importId, ctx, s)),
    listImages: (filter, ctx) => withSession(ctx, (s) => listAws(filter, ctx, s)),
    deleteCloudImage: (img, ctx) => withSession(ctx, (s) => deleteCloudImageAws(img, ctx, s)),
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
  };
  return plugin;
}
