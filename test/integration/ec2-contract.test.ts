/**
 * Contract tests: the same EC2 calls against our emulator and against moto (`moto_server`, a third-party EC2), with
 * the outcomes compared where moto implements the call the way EC2 does. Where moto is more lenient than EC2
 * (it accepts `aws:` tag keys, any SriovNetSupport or volume type, duplicate AMI names, a reused ClientToken with
 * other parameters, malformed ids, and it fails on unknown filter names with an HTML 500), the emulator is checked
 * on its own against EC2's documented behaviour (issue #13 item 12).
 */
import {
  CopyImageCommand,
  CreateSnapshotCommand,
  CreateTagsCommand,
  CreateVolumeCommand,
  DeleteSnapshotCommand,
  DescribeImagesCommand,
  DescribeImportSnapshotTasksCommand,
  DescribeSnapshotsCommand,
  EC2Client,
  ImportSnapshotCommand,
  ModifyImageAttributeCommand,
  RegisterImageCommand,
  type RegisterImageCommandInput,
} from '@aws-sdk/client-ec2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Ec2Emulator, startEc2 } from '../helpers/ec2-emulator.js';
import { type MotoHandle, motoUnavailableReason, startMoto } from '../helpers/moto.js';

const motoMissing = motoUnavailableReason();

interface Backend {
  name: string;
  client(region: string): EC2Client;
  /** a completed snapshot in us-west-2 */
  snapshot(): Promise<string>;
}

function clientFor(endpoint: string, region: string): EC2Client {
  return new EC2Client({
    endpoint,
    region,
    credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' },
    maxAttempts: 1,
  });
}

let emu: Ec2Emulator;
let moto: MotoHandle | undefined;
const clients: EC2Client[] = [];

beforeAll(async () => {
  emu = await startEc2({ latency: { apiMs: 0, importMs: 50, registerMs: 0, copyMs: 50 } });
  if (!motoMissing) moto = await startMoto();
}, 60_000);
afterAll(async () => {
  for (const c of clients) c.destroy();
  await emu?.close();
  await moto?.stop();
});

function track(c: EC2Client): EC2Client {
  clients.push(c);
  return c;
}

const emulator: Backend = {
  name: 'emulator',
  client: (region) => track(clientFor(emu.url, region)),
  async snapshot() {
    const c = this.client('us-west-2');
    const t = await c.send(
      new ImportSnapshotCommand({
        DiskContainer: { Format: 'VHD', UserBucket: { S3Bucket: 'b', S3Key: 'k.vhd' } },
      }),
    );
    for (;;) {
      const d = await c.send(new DescribeImportSnapshotTasksCommand({ ImportTaskIds: [t.ImportTaskId!] }));
      const snap = d.ImportSnapshotTasks?.[0]?.SnapshotTaskDetail?.SnapshotId;
      if (snap) return snap;
      await new Promise((r) => setTimeout(r, 20));
    }
  },
};

const motoBackend: Backend = {
  name: 'moto',
  client: (region) => track(clientFor(moto!.endpoint, region)),
  async snapshot() {
    const c = this.client('us-west-2');
    const v = await c.send(new CreateVolumeCommand({ Size: 1, AvailabilityZone: 'us-west-2a' }));
    const s = await c.send(new CreateSnapshotCommand({ VolumeId: v.VolumeId! }));
    return s.SnapshotId!;
  },
};

type Outcome = { ok: unknown } | { error: string };

async function outcome(fn: () => Promise<unknown>): Promise<Outcome> {
  try {
    return { ok: await fn() };
  } catch (err) {
    return { error: (err as { name?: string }).name ?? String(err) };
  }
}

let seq = 0;
function registerInput(
  snap: string,
  extra: Partial<RegisterImageCommandInput> = {},
): RegisterImageCommandInput {
  return {
    Name: `contract-${++seq}-${Date.now()}`,
    Architecture: 'x86_64',
    VirtualizationType: 'hvm',
    RootDeviceName: '/dev/xvda',
    BlockDeviceMappings: [{ DeviceName: '/dev/xvda', Ebs: { SnapshotId: snap, VolumeType: 'gp3' } }],
    ...extra,
  };
}

/** A scenario: calls against one backend, returning what is compared. */
type Scenario = (b: Backend) => Promise<unknown>;

const scenarios: Record<string, Scenario> = {
  'DescribeImages: name wildcard and state filters find a registered image': async (b) => {
    const c = b.client('us-west-2');
    const snap = await b.snapshot();
    const input = registerInput(snap);
    await c.send(new RegisterImageCommand(input));
    const found = async (filters: { Name: string; Values: string[] }[]) =>
      (await c.send(new DescribeImagesCommand({ Owners: ['self'], Filters: filters }))).Images?.some(
        (i) => i.Name === input.Name,
      ) ?? false;
    // wait for available (the emulator's registerMs is 0; moto is available at once)
    return {
      byName: await found([{ Name: 'name', Values: [`${input.Name!.slice(0, 12)}*`] }]),
      available: await found([{ Name: 'state', Values: ['available'] }]),
      ownerAliasAmazon: await found([{ Name: 'owner-alias', Values: ['amazon'] }]),
    };
  },
  'ModifyImageAttribute: launch permission for all makes the image public; a bad group or user is refused':
    async (b) => {
      const c = b.client('us-west-2');
      const id = (await c.send(new RegisterImageCommand(registerInput(await b.snapshot())))).ImageId!;
      await c.send(
        new ModifyImageAttributeCommand({ ImageId: id, LaunchPermission: { Add: [{ Group: 'all' }] } }),
      );
      const pub = (await c.send(new DescribeImagesCommand({ ImageIds: [id] }))).Images?.[0]?.Public;
      return {
        public: pub,
        badGroup: await outcome(() =>
          c.send(
            new ModifyImageAttributeCommand({
              ImageId: id,
              LaunchPermission: { Add: [{ Group: 'everyone' as 'all' }] },
            }),
          ),
        ),
        badUser: await outcome(() =>
          c.send(
            new ModifyImageAttributeCommand({ ImageId: id, LaunchPermission: { Add: [{ UserId: 'abc' }] } }),
          ),
        ),
      };
    },
  'CreateTags: more than 50 tags, and a resource that does not exist': async (b) => {
    const c = b.client('us-west-2');
    const id = (await c.send(new RegisterImageCommand(registerInput(await b.snapshot())))).ImageId!;
    const tags = Array.from({ length: 51 }, (_, i) => ({ Key: `k${i}`, Value: 'v' }));
    return {
      tooMany: await outcome(() => c.send(new CreateTagsCommand({ Resources: [id], Tags: tags }))),
      missing: await outcome(() =>
        c.send(
          new CreateTagsCommand({ Resources: ['ami-0123456789abcdef0'], Tags: [{ Key: 'k', Value: 'v' }] }),
        ),
      ),
    };
  },
  'not found: images, snapshots, copy sources': async (b) => {
    const c = b.client('us-west-2');
    return {
      image: await outcome(() => c.send(new DescribeImagesCommand({ ImageIds: ['ami-0123456789abcdef0'] }))),
      snapshot: await outcome(() =>
        c.send(new DescribeSnapshotsCommand({ SnapshotIds: ['snap-0123456789abcdef0'] })),
      ),
      deleteSnapshot: await outcome(() =>
        c.send(new DeleteSnapshotCommand({ SnapshotId: 'snap-0123456789abcdef0' })),
      ),
      copySource: await outcome(() =>
        b.client('eu-west-1').send(
          new CopyImageCommand({
            Name: 'copy-missing',
            SourceImageId: 'ami-0123456789abcdef0',
            SourceRegion: 'us-west-2',
          }),
        ),
      ),
    };
  },
};

describe('EC2 contract: the emulator answers as moto does where moto implements EC2', () => {
  it.each(Object.keys(scenarios))(`%s${motoMissing ? ` (skipped: ${motoMissing})` : ''}`, async (name) => {
    if (motoMissing) return;
    const scenario = scenarios[name]!;
    const [ours, theirs] = [await scenario(emulator), await scenario(motoBackend)];
    expect(ours).toEqual(theirs);
    expect(JSON.stringify(ours)).not.toBe('{}');
  });
});

describe('EC2 emulator: as strict as EC2 where moto is lenient', () => {
  const c = () => emulator.client('us-west-2');
  const code = async (fn: () => Promise<unknown>) => {
    const o = await outcome(fn);
    return 'error' in o ? o.error : 'ok';
  };

  it('reserved aws: tag keys are refused (CreateTags and TagSpecifications)', async () => {
    const snap = await emulator.snapshot();
    expect(
      await code(() =>
        c().send(new CreateTagsCommand({ Resources: [snap], Tags: [{ Key: 'aws:x', Value: '1' }] })),
      ),
    ).toBe('InvalidParameterValue');
    const input = registerInput(snap, {
      TagSpecifications: [{ ResourceType: 'image', Tags: [{ Key: 'AWS:y', Value: '1' }] }],
    });
    expect(await code(() => c().send(new RegisterImageCommand(input)))).toBe('InvalidParameterValue');
  });

  it('SriovNetSupport other than simple, and unknown volume types, are refused; EBS types are accepted', async () => {
    const snap = await emulator.snapshot();
    expect(
      await code(() => c().send(new RegisterImageCommand(registerInput(snap, { SriovNetSupport: 'fast' })))),
    ).toBe('InvalidParameterValue');
    const gp9 = registerInput(snap);
    gp9.BlockDeviceMappings![0]!.Ebs!.VolumeType = 'gp9' as 'gp3';
    expect(await code(() => c().send(new RegisterImageCommand(gp9)))).toBe('InvalidParameterValue');
    const io2 = registerInput(snap, { SriovNetSupport: 'simple' });
    io2.BlockDeviceMappings![0]!.Ebs!.VolumeType = 'io2';
    expect(await code(() => c().send(new RegisterImageCommand(io2)))).toBe('ok');
  });

  it('duplicate AMI names, ModifyImageAttribute with nothing to modify, a reused ClientToken', async () => {
    const snap = await emulator.snapshot();
    const input = registerInput(snap);
    const id = (await c().send(new RegisterImageCommand(input))).ImageId!;
    expect(await code(() => c().send(new RegisterImageCommand(input)))).toBe('InvalidAMIName.Duplicate');
    expect(await code(() => c().send(new ModifyImageAttributeCommand({ ImageId: id })))).toBe(
      'InvalidParameterCombination',
    );
    const eu = emulator.client('eu-west-1');
    const first = await eu.send(
      new CopyImageCommand({
        Name: `${input.Name}-c`,
        SourceImageId: id,
        SourceRegion: 'us-west-2',
        ClientToken: 'tok-1',
      }),
    );
    // the same request again gets the same copy; other parameters with that token are refused
    const again = await eu.send(
      new CopyImageCommand({
        Name: `${input.Name}-c`,
        SourceImageId: id,
        SourceRegion: 'us-west-2',
        ClientToken: 'tok-1',
      }),
    );
    expect(again.ImageId).toBe(first.ImageId);
    expect(
      await code(() =>
        eu.send(
          new CopyImageCommand({
            Name: `${input.Name}-d`,
            SourceImageId: id,
            SourceRegion: 'us-west-2',
            ClientToken: 'tok-1',
          }),
        ),
      ),
    ).toBe('IdempotentParameterMismatch');
    expect(
      await code(() =>
        eu.send(
          new CopyImageCommand({
            Name: `${input.Name}-e`,
            SourceImageId: id,
            SourceRegion: undefined as never,
          }),
        ),
      ),
    ).toBe('MissingParameter');
  });

  it('filter names are checked even in a region with no images; owner-alias and snapshot-id filters work', async () => {
    const empty = emulator.client('ap-southeast-2');
    expect(
      await code(() =>
        empty.send(
          new DescribeImagesCommand({ Owners: ['self'], Filters: [{ Name: 'bogus', Values: ['x'] }] }),
        ),
      ),
    ).toBe('InvalidParameterValue');
    expect(
      await code(() =>
        empty.send(
          new DescribeSnapshotsCommand({ OwnerIds: ['self'], Filters: [{ Name: 'bogus', Values: ['x'] }] }),
        ),
      ),
    ).toBe('InvalidParameterValue');
    const snap = await emulator.snapshot();
    const id = (await c().send(new RegisterImageCommand(registerInput(snap)))).ImageId!;
    const bySnap = await c().send(
      new DescribeImagesCommand({
        Owners: ['self'],
        Filters: [{ Name: 'block-device-mapping.snapshot-id', Values: [snap] }],
      }),
    );
    expect(bySnap.Images?.map((i) => i.ImageId)).toEqual([id]);
    const alias = await c().send(
      new DescribeImagesCommand({ Owners: ['self'], Filters: [{ Name: 'owner-alias', Values: ['amazon'] }] }),
    );
    expect(alias.Images).toEqual([]);
  });

  it('malformed ids are …Malformed, not …NotFound', async () => {
    expect(await code(() => c().send(new DescribeImagesCommand({ ImageIds: ['ami-xyz'] })))).toBe(
      'InvalidAMIID.Malformed',
    );
    expect(await code(() => c().send(new DescribeSnapshotsCommand({ SnapshotIds: ['snap-xyz'] })))).toBe(
      'InvalidSnapshotID.Malformed',
    );
    expect(await code(() => c().send(new DeleteSnapshotCommand({ SnapshotId: 'snap-1' })))).toBe(
      'InvalidSnapshotID.Malformed',
    );
    expect(
      await code(() =>
        c().send(new ModifyImageAttributeCommand({ ImageId: 'ami-1', Description: { Value: 'x' } })),
      ),
    ).toBe('InvalidAMIID.Malformed');
  });
});
