/**
 * The emulators run on their own (npm run emulator:ec2 / emulator:broker): they print their endpoint and answer
 * the real SDK / the broker client there. Also the EC2 emulator's protocol details the plugin relies on.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { DescribeImagesCommand, DescribeRegionsCommand, EC2Client } from '@aws-sdk/client-ec2';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { IdentityBrokerClient } from '../../src/clouds/broker/client.js';
import { ROOT } from '../helpers/cli.js';
import { type Ec2Emulator, startEc2 } from '../helpers/ec2-emulator.js';

const TSX = join(ROOT, 'node_modules', '.bin', 'tsx');
const children: ChildProcess[] = [];
let emu: Ec2Emulator | undefined;

afterEach(async () => {
  for (const c of children.splice(0)) {
    if (c.exitCode === null && c.signalCode === null) {
      const gone = new Promise((r) => c.once('exit', r));
      c.kill('SIGTERM');
      await gone;
    }
  }
  await emu?.close();
  emu = undefined;
});

/** Start `tsx <script> args`, resolve with the first stdout line that matches `pattern`. */
function startCli(
  script: string,
  args: string[],
  pattern: RegExp,
): Promise<{ match: RegExpMatchArray; out: () => string }> {
  const child = spawn(TSX, [join(ROOT, script), ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let out = '';
  let err = '';
  child.stderr.on('data', (d: Buffer) => {
    err += d.toString();
  });
  return new Promise((resolve, reject) => {
    const t = setTimeout(
      () => reject(new Error(`${script} printed nothing useful:\n${out}\n${err}`)),
      30_000,
    );
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = out.match(pattern);
      if (m) {
        clearTimeout(t);
        resolve({ match: m, out: () => out + err });
      }
    });
    child.once('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`${script} exited ${code}:\n${out}\n${err}`));
    });
  });
}

function client(url: string, region: string): EC2Client {
  return new EC2Client({
    region,
    endpoint: url,
    credentials: { accessKeyId: 'AK', secretAccessKey: 'SK' },
    maxAttempts: 1,
  });
}

describe('emulators as programs', () => {
  it('emulator:ec2 prints its endpoint and speaks EC2 there', async () => {
    const { match } = await startCli(
      'emulators/ec2/main.ts',
      ['--port', '0', '--quiet'],
      /listening on (http:\/\/\S+)/,
    );
    const c = client(match[1]!, 'eu-west-1');
    try {
      const r = await c.send(new DescribeRegionsCommand({}));
      expect(r.Regions?.map((x) => x.RegionName)).toContain('eu-west-1');
      expect(r.Regions?.map((x) => x.RegionName)).not.toContain('af-south-1');
    } finally {
      c.destroy();
    }
  });

  it('emulator:broker prints its endpoint and key, which the broker client can use', async () => {
    const { match } = await startCli(
      'emulators/broker/main.ts',
      ['--port', '0', '--quiet'],
      /IDENTITY_BROKER_ENDPOINT=(\S+)\n.*IDENTITY_BROKER_API_KEY=(\S+)\n/,
    );
    const b = new IdentityBrokerClient({
      endpoint: match[1]!,
      apiKey: match[2]!,
      log: pino({ level: 'silent' }),
    });
    expect(await b.defaultRegion('aws')).toBe('us-west-2');
  });

  it('rejects a bad option with a message naming it', async () => {
    const child = spawn(TSX, [join(ROOT, 'emulators/ec2/main.ts'), '--port', 'eighty'], { cwd: ROOT });
    let err = '';
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
    });
    const code = await new Promise((r) => child.once('exit', r));
    expect(code).toBe(2);
    expect(err).toMatch(/--port: expected a port number/);
  });
});

describe('EC2 emulator protocol', () => {
  it('keeps state per signing region and answers errors the SDK understands', async () => {
    emu = await startEc2();
    const { imageId } = emu.seedImage('us-east-1', { name: 'seeded', tags: { project: 'p' } });
    const east = client(emu.url, 'us-east-1');
    const west = client(emu.url, 'us-west-2');
    const optOut = client(emu.url, 'af-south-1');
    try {
      const found = await east.send(
        new DescribeImagesCommand({ Owners: ['self'], Filters: [{ Name: 'tag:project', Values: ['p'] }] }),
      );
      expect(found.Images?.map((i) => i.ImageId)).toEqual([imageId]);
      const none = await west.send(new DescribeImagesCommand({ Owners: ['self'] }));
      expect(none.Images).toEqual([]);
      await expect(west.send(new DescribeImagesCommand({ ImageIds: [imageId] }))).rejects.toMatchObject({
        name: 'InvalidAMIID.NotFound',
      });
      await expect(optOut.send(new DescribeRegionsCommand({}))).rejects.toMatchObject({
        name: 'AuthFailure',
      });
      emu.faults.throttleNext = 1;
      await expect(east.send(new DescribeRegionsCommand({}))).rejects.toMatchObject({
        name: 'RequestLimitExceeded',
        $metadata: { httpStatusCode: 503 },
      });
    } finally {
      for (const c of [east, west, optOut]) c.destroy();
    }
  });
});
