/** Pure parts of the cloud plugins: registry, AWS planning helpers, summary, backoff, the emulator's query parser. */
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { parseQuery } from '../../emulators/ec2/query.js';
import { importPlan } from '../../src/clouds/aws/import.js';
import { deprecationTime, launchPermissions, targetRegions } from '../../src/clouds/aws/publish.js';
import { checkAwsConfig } from '../../src/clouds/aws/settings.js';
import { tuningFromEnv } from '../../src/clouds/aws/tuning.js';
import { cloudNames, getCloud, isPlaceholderProject, PLACEHOLDER_PROJECT } from '../../src/clouds/index.js';
import { formatPublishSummary } from '../../src/clouds/summary.js';
import { backoffDelay, pollUntil } from '../../src/clouds/wait.js';
import { UserError } from '../../src/util/errors.js';
import { awsImage } from '../helpers/ec2-emulator.js';

const log = pino({ level: 'silent' });
const YEAR = 365 * 86_400_000;

describe('cloud registry', () => {
  it('has a plugin per cloud; only aws imports and publishes', () => {
    expect(cloudNames()).toEqual(['aws', 'azure', 'gcp', 'generic', 'nocloud', 'oci']);
    for (const name of cloudNames()) expect(getCloud(name).name).toBe(name);
    expect([...getCloud('aws').actions].sort()).toEqual(['delete', 'import', 'list', 'publish']);
    for (const name of ['azure', 'gcp', 'generic', 'nocloud', 'oci'])
      expect(getCloud(name).actions.size).toBe(0);
  });

  it('names the known clouds for an unknown one', () => {
    expect(() => getCloud('digitalocean')).toThrow(UserError);
    expect(() => getCloud('digitalocean')).toThrow(/unknown cloud "digitalocean".*aws, azure/);
    expect(() => getCloud('__proto__')).toThrow(/unknown cloud/);
  });

  it('recognises placeholder projects', () => {
    expect(isPlaceholderProject(PLACEHOLDER_PROJECT)).toBe(true);
    expect(isPlaceholderProject('my-project-identifier')).toBe(true);
    expect(isPlaceholderProject('')).toBe(true);
    expect(isPlaceholderProject('https://alpinelinux.org/cloud')).toBe(false);
  });

  it('builds console URLs from cloud_region_url / cloud_launch_url or defaults', () => {
    const aws = getCloud('aws');
    expect(aws.regionUrl!(awsImage('/w'), 'eu-west-1', 'ami-1')).toContain(
      'eu-west-1.console.aws.amazon.com',
    );
    const img = awsImage('/w', { cloud_launch_url: 'https://{region}.example/launch?ami={image_id}' });
    expect(aws.launchUrl!(img, 'us-east-1', 'ami-2')).toBe('https://us-east-1.example/launch?ami=ami-2');
  });
});

describe('aws planning', () => {
  it('maps arch and firmware (the import step checks nothing: configs did)', () => {
    expect(importPlan(awsImage('/w'))).toMatchObject({
      arch: 'x86_64',
      bootMode: 'legacy-bios',
      imdsV2: true,
    });
    expect(importPlan(awsImage('/w', { arch: 'aarch64', firmware: 'uefi' }))).toMatchObject({
      arch: 'arm64',
      bootMode: 'uefi',
    });
    expect(importPlan(awsImage('/w', { encrypted: 'alias/images' }))).toMatchObject({
      encrypted: true,
      kmsKeyId: 'alias/images',
    });
    expect(importPlan(awsImage('/w', { imdsv2_required: false })).imdsV2).toBe(false);
  });

  it('checks every setting it reads at configs, reporting each problem', () => {
    expect(checkAwsConfig(awsImage('/w').config)).toEqual([]);
    const keys = (over: Parameters<typeof awsImage>[1]) =>
      checkAwsConfig(awsImage('/w', over).config).map((i) => `${i.key}=${JSON.stringify(i.found)}`);
    expect(keys({ arch: 'riscv64', firmware: 'coreboot', image_format: 'qcow2' })).toEqual([
      'image_format="qcow2"',
      'arch="riscv64"',
      'firmware="coreboot"',
    ]);
    expect(
      keys({
        import_bucket: 'Bad_Bucket',
        encrypted: 5 as unknown as boolean,
        imdsv2_required: 'yes' as unknown as boolean,
        cloud_region_url: 'javascript:alert(1)',
        access: { everyone: true, '111122223333': true },
        regions: { ALL: false, 'us-west-2': true, 'Mars-1': true },
      }),
    ).toEqual([
      'encrypted=5',
      'import_bucket="Bad_Bucket"',
      'imdsv2_required="yes"',
      'cloud_region_url="javascript:alert(1)"',
      'access.everyone="everyone"',
      'regions.Mars-1="Mars-1"',
    ]);
  });

  it('resolves target regions: ALL, listed, not enabled, none', () => {
    const enabled = ['eu-west-1', 'us-east-1', 'us-west-2'];
    expect(
      targetRegions(awsImage('/w', { regions: { ALL: true } }), enabled, 'us-west-2', log).targets,
    ).toEqual(enabled);
    const r = targetRegions(
      awsImage('/w', { regions: { ALL: false, 'us-east-1': true, 'me-south-1': true, 'eu-west-1': null } }),
      enabled,
      'us-west-2',
      log,
    );
    expect(r.targets).toEqual(['us-east-1']);
    expect(r.failures).toEqual([expect.objectContaining({ region: 'me-south-1', code: 'RegionNotEnabled' })]);
    expect(targetRegions(awsImage('/w', { regions: {} }), enabled, 'us-west-2', log).targets).toEqual([
      'us-west-2',
    ]);
  });

  it('turns access into launch permissions', () => {
    expect(launchPermissions(awsImage('/w', { access: { PUBLIC: true } }))).toEqual({
      public: true,
      users: [],
    });
    expect(
      launchPermissions(awsImage('/w', { access: { '222233334444': true, '111122223333': true } })),
    ).toEqual({
      public: false,
      users: ['111122223333', '222233334444'],
    });
  });

  it('deprecates at end_of_life 23:59 UTC, capped for public AMIs', () => {
    const now = new Date('2026-01-15T10:00:00Z');
    expect(deprecationTime('2027-06-30', true, now)).toEqual({ at: new Date('2027-06-30T23:59:00Z') });
    const far = deprecationTime('2031-01-01', true, now);
    expect(far.at!.getTime()).toBeLessThanOrEqual(now.getTime() + 2 * YEAR);
    expect(far.at!.getTime()).toBeGreaterThan(now.getTime() + 1.99 * YEAR);
    expect(far.warning).toMatch(/2-year limit/);
    expect(deprecationTime('2031-01-01', false, now)).toEqual({ at: new Date('2031-01-01T23:59:00Z') });
    expect(deprecationTime('2020-01-01', true, now).warning).toMatch(/has passed/);
    expect(deprecationTime('someday', true, now)).toEqual({ warning: expect.stringMatching(/not a date/) });
  });

  it('reads timing knobs from the environment, rejecting nonsense', () => {
    expect(tuningFromEnv({ CLOUD_POLL_INITIAL_MS: '50', CLOUD_COPY_TIMEOUT_S: '2' })).toMatchObject({
      pollInitialMs: 50,
      copyTimeoutMs: 2000,
      pollMaxMs: 3000,
    });
    expect(() => tuningFromEnv({ AWS_MAX_ATTEMPTS: '0' })).toThrow(/AWS_MAX_ATTEMPTS/);
    expect(() => tuningFromEnv({ CLOUD_POLL_MAX_MS: 'soon' })).toThrow(/CLOUD_POLL_MAX_MS/);
  });
});

describe('publish summary', () => {
  it('lists every region, failures with code, and warnings', () => {
    const text = formatPublishSummary('aws_alpine-x-r0', {
      artifacts: { 'us-west-2': 'ami-1', 'us-east-1': 'ami-2' },
      failures: [
        { region: 'eu-west-1', code: 'ImageFailed', error: 'copy failed' },
        { region: 'us-east-1', code: 'ResourceLimitExceeded', error: 'public AMI quota reached' },
      ],
      warnings: ['deprecation capped'],
    });
    expect(text.split('\n')).toEqual([
      'publish aws_alpine-x-r0: 1 of 3 region(s) ok, 2 FAILED',
      '  eu-west-1  FAILED  -  ImageFailed: copy failed',
      '  us-east-1  FAILED  ami-2  ResourceLimitExceeded: public AMI quota reached',
      '  us-west-2  ok      ami-1',
      '  warning: deprecation capped',
    ]);
  });
});

describe('waiting', () => {
  it('backs off exponentially up to the cap, with jitter', () => {
    const d = Array.from({ length: 12 }, (_, i) => backoffDelay(i, 100, 1000));
    expect(d[0]).toBeGreaterThanOrEqual(90);
    expect(d[0]).toBeLessThanOrEqual(110);
    expect(d[3]).toBeGreaterThan(300);
    for (const x of d) expect(x).toBeLessThanOrEqual(1100);
  });

  it('polls until done and gives up at the timeout', async () => {
    let n = 0;
    const v = await pollUntil(
      'thing',
      async () => (++n >= 3 ? { done: true, value: 'ok' } : { done: false, progress: `step ${n}` }),
      { initialMs: 1, maxMs: 5, timeoutMs: 5000 },
      log,
    );
    expect(v).toBe('ok');
    expect(n).toBe(3);
    await expect(
      pollUntil('slow thing', async () => ({ done: false }), { initialMs: 5, maxMs: 10, timeoutMs: 40 }, log),
    ).rejects.toThrow(/slow thing: still not done/);
  });
});

describe('EC2 query parsing (emulator)', () => {
  it('nests dotted keys and 1-based lists', () => {
    const q = parseQuery(
      'Action=DescribeImages&Owner.1=self&Filter.1.Name=tag%3Aproject&Filter.1.Value.1=a&Filter.1.Value.2=b' +
        '&Filter.2.Name=state&Filter.2.Value.1=available&LaunchPermission.Add.1.Group=all',
    );
    expect(q).toEqual({
      Action: 'DescribeImages',
      Owner: ['self'],
      Filter: [
        { Name: 'tag:project', Value: ['a', 'b'] },
        { Name: 'state', Value: ['available'] },
      ],
      LaunchPermission: { Add: [{ Group: 'all' }] },
    });
  });
});
