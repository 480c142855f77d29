/**
 * The AWS plugin with --use-broker: default region and enabled regions from the identity broker, and every
 * region called with that region's own short-lived credentials (the EC2 emulator refuses any other key).
 */
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getCloud } from '../../src/clouds/index.js';
import {
  type BrokerEmulator,
  brokerEnv,
  DEFAULT_BROKER_KEY,
  startBroker,
} from '../helpers/broker-emulator.js';
import {
  awsImage,
  captureContext,
  type Ec2Emulator,
  startEc2,
  writeFixedVhd,
} from '../helpers/ec2-emulator.js';
import { type S3rverHandle, startS3rver } from '../helpers/s3rver.js';

let s3: S3rverHandle;
let broker: BrokerEmulator;
let emu: Ec2Emulator;
let workDir: string;

beforeAll(async () => {
  s3 = await startS3rver({ buckets: [] });
  // the default region's credentials are the ones s3rver knows; every other region gets its own key
  broker = await startBroker({
    credentialsFor: (r) => (r === 'us-west-2' ? { access_key: 'S3RVER', secret_key: 'S3RVER' } : undefined),
  });
  emu = await startEc2({ s3Endpoint: s3.endpoint, accessKeyFor: (r) => broker.accessKeyFor(r) });
  workDir = await mkdtemp(join(tmpdir(), 'aws-broker-'));
});

afterAll(async () => {
  await emu?.close();
  await broker?.close();
  await s3?.stop();
  await rm(workDir, { recursive: true, force: true });
});

async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await filesUnder(p)));
    else if ((await stat(p)).size < 1_000_000) out.push(p);
  }
  return out;
}

describe('aws plugin with the identity broker', () => {
  it('imports and publishes with per-region broker credentials, leaking no secret', async () => {
    const env = {
      AWS_ENDPOINT_URL_EC2: emu.url,
      AWS_ENDPOINT_URL_S3: s3.endpoint,
      AWS_CONFIG_FILE: '/dev/null',
      AWS_SHARED_CREDENTIALS_FILE: '/dev/null',
      AWS_EC2_METADATA_DISABLED: 'true',
      CLOUD_POLL_INITIAL_MS: '25',
      CLOUD_POLL_MAX_MS: '100',
      ...brokerEnv(broker),
    };
    const image = awsImage(workDir, { regions: { ALL: true } });
    await writeFixedVhd(image.imagePath, 1);
    const { ctx, text } = captureContext({ env, workDir, useBroker: true });
    const aws = getCloud('aws');

    const imp = await aws.importImage!(image, ctx);
    expect(imp.import_region).toBe('us-west-2'); // the broker's default region
    Object.assign(image.config, imp);
    const pub = await aws.publishImage!(image, ctx);
    expect(pub.failures).toEqual([]);
    // every region the broker lists as enabled, nothing else
    expect(Object.keys(pub.artifacts).sort()).toEqual(
      broker.regions
        .filter((r) => r.enabled)
        .map((r) => r.name)
        .sort(),
    );
    // each region was called with its own key (the emulator refuses others: no AuthFailure happened)
    expect(emu.calls.filter((c) => c.code === 'AuthFailure')).toEqual([]);
    for (const region of Object.keys(pub.artifacts)) {
      const keys = new Set(emu.calls.filter((c) => c.region === region).map((c) => c.accessKeyId));
      expect([...keys]).toEqual([broker.accessKeyFor(region)]);
    }
    // the run cache means one credentials request per region, however many calls
    expect(broker.hits('/api/account')).toBe(1);
    expect(broker.hits('/api/account/image-builder/credentials/eu-west-1')).toBe(1);

    // nothing secret in the logs or in any file under the work directory
    const secrets = [DEFAULT_BROKER_KEY, broker.secretKeyFor('eu-west-1'), broker.secretKeyFor('ap-south-1')];
    const logs = text();
    for (const s of secrets) expect(logs).not.toContain(s);
    const files = await filesUnder(workDir);
    expect(files.some((f) => f.includes(join('.cache', 'broker')))).toBe(true);
    for (const f of files) {
      const content = await readFile(f, 'latin1');
      for (const s of secrets) expect(content, f).not.toContain(s);
    }
  });

  it('fails clearly when the broker rejects the key', async () => {
    const env = {
      AWS_ENDPOINT_URL_EC2: emu.url,
      ...brokerEnv(broker, 'not-a-valid-key-000000'),
    };
    const image = awsImage(workDir, { revision: 5 });
    const { ctx } = captureContext({ env, workDir, useBroker: true });
    await expect(getCloud('aws').latestImported!(image, ctx)).rejects.toThrow(/HTTP 401/);
  });
});
