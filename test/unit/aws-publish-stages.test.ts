/** The AWS publish's region stages one at a time, against a recording EC2 client (no emulator needed). */
import type { EC2Client } from '@aws-sdk/client-ec2';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import type { Ami } from '../../src/clouds/aws/ec2.js';
import {
  copyToRegion,
  type PublishJob,
  publishJob,
  REGION_STAGES,
  type RegionWork,
  removeFailedCopies,
  setDeprecation,
  setLaunchPermissions,
  tagCopy,
  waitCopyAvailable,
} from '../../src/clouds/aws/publish.js';
import type { AwsSession } from '../../src/clouds/aws/session.js';
import { awsImage } from '../helpers/ec2-emulator.js';

const log = pino({ level: 'silent' });
const SOURCE: Ami = { ImageId: 'ami-src', State: 'available', Name: 'img', Description: 'd' };

/** An EC2 client that records each command (name and input) and answers from `reply`. */
function recordingEc2(reply: (name: string, input: Record<string, unknown>) => unknown = () => ({})) {
  const calls: { name: string; input: Record<string, unknown> }[] = [];
  const client = {
    async send(cmd: { constructor: { name: string }; input: Record<string, unknown> }) {
      const name = cmd.constructor.name.replace(/Command$/, '');
      calls.push({ name, input: cmd.input });
      return reply(name, cmd.input);
    },
  } as unknown as EC2Client;
  return { client, calls };
}

function awsError(name: string, message: string): Error {
  return Object.assign(new Error(message), { name, $metadata: {} });
}

function job(overrides: Parameters<typeof awsImage>[1] = {}): PublishJob {
  const image = awsImage('/w', { end_of_life: '2099-12-31', ...overrides });
  return publishJob(
    image,
    {} as AwsSession,
    log,
    { encrypted: false },
    { source: SOURCE, sourceRegion: 'us-east-1' },
  );
}

describe('aws publish region stages', () => {
  it('run in this order', () => {
    expect(REGION_STAGES.map((s) => s.name)).toEqual([
      'remove failed copies',
      'copy',
      'wait available',
      'tag',
      'launch permissions',
      'deprecate',
    ]);
  });

  it('copy nothing in the source region: remove, copy and wait are no-ops there', async () => {
    const { client, calls } = recordingEc2();
    const work: RegionWork = { region: 'us-east-1', ec2: client, ami: SOURCE, warnings: [] };
    const j = job();
    await removeFailedCopies(j, work);
    await copyToRegion(j, work);
    await waitCopyAvailable(j, work);
    expect(calls).toEqual([]);
    expect(work.ami).toBe(SOURCE);
  });

  it('copy: a new CopyImage of the source carries the identity tags from the start', async () => {
    const { client, calls } = recordingEc2((name) =>
      name === 'DescribeImages' ? { Images: [] } : { ImageId: 'ami-copy' },
    );
    const j = job();
    const work: RegionWork = { region: 'eu-west-1', ec2: client, warnings: [] };
    await removeFailedCopies(j, work);
    await copyToRegion(j, work);
    expect(calls.map((c) => c.name)).toEqual(['DescribeImages', 'CopyImage']);
    const copy = calls[1]!.input;
    expect(copy).toMatchObject({ SourceImageId: 'ami-src', SourceRegion: 'us-east-1', Encrypted: false });
    expect(JSON.stringify(copy.TagSpecifications)).toContain('image_key');
    expect(work.ami).toMatchObject({ ImageId: 'ami-copy', State: 'pending' });
  });

  it('tag keeps the published time of an earlier run and sets the description when it differs', async () => {
    const { client, calls } = recordingEc2();
    const j = job();
    const work: RegionWork = {
      region: 'eu-west-1',
      ec2: client,
      ami: {
        ImageId: 'ami-1',
        State: 'available',
        Tags: [{ Key: 'published', Value: '2026-01-01T00:00:00Z' }],
      },
      warnings: [],
    };
    await tagCopy(j, work);
    expect(work.published).toBe('2026-01-01T00:00:00Z');
    expect(calls.map((c) => c.name)).toEqual(['CreateTags', 'ModifyImageAttribute']);
    expect(calls[1]!.input).toEqual({ ImageId: 'ami-1', Description: { Value: j.image.imageDescription } });
  });

  it('a refused public permission fails the region but the deprecation is still set (as for a private AMI)', async () => {
    const { client, calls } = recordingEc2((name, input) => {
      if (name === 'ModifyImageAttribute' && input.LaunchPermission)
        throw awsError('ResourceLimitExceeded', 'too many public images');
      return {};
    });
    const j = job({ access: { PUBLIC: true } });
    const work: RegionWork = {
      region: 'eu-west-1',
      ec2: client,
      ami: { ImageId: 'ami-1', State: 'available', CreationDate: new Date().toISOString() },
      warnings: [],
    };
    await setLaunchPermissions(j, work);
    expect(work.failure).toMatchObject({ region: 'eu-west-1', code: 'ResourceLimitExceeded' });
    expect(work.failure?.error).toMatch(
      /public AMI quota reached in eu-west-1: ami-1 exists but is NOT public/,
    );
    await setDeprecation(j, work);
    expect(calls.map((c) => c.name)).toEqual([
      'ResetImageAttribute',
      'ModifyImageAttribute',
      'EnableImageDeprecation',
    ]);
    // not public after all: AWS's 10-year limit applies, so 2099 is capped to about ten years from now
    const at = calls[2]!.input.DeprecateAt as Date;
    expect(at.getUTCFullYear()).toBeGreaterThanOrEqual(new Date().getUTCFullYear() + 9);
  });

  it('a refused deprecation is a warning, not a failure', async () => {
    const { client } = recordingEc2(() => {
      throw awsError('UnauthorizedOperation', 'no');
    });
    const j = job();
    const work: RegionWork = { region: 'eu-west-1', ec2: client, ami: { ImageId: 'ami-1' }, warnings: [] };
    await setDeprecation(j, work);
    expect(work.failure).toBeUndefined();
    expect(work.warnings.join()).toMatch(/eu-west-1: cannot set deprecation time of ami-1/);
  });
});
