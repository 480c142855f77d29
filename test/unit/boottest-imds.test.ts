// The EC2 instance-metadata stand-in of the boot test, over real HTTP: IMDSv2 only (token flow), the paths
// tiny-cloud-aws and cloud-init read.
import { createServer, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createImdsService } from '../../src/clouds/aws/imds.js';
import { getCloud } from '../../src/clouds/index.js';

const data = {
  instanceId: 'i-boottest1',
  hostname: 'boot-test-1',
  sshPublicKey: 'ssh-ed25519 AAAAC3Nza boot-test',
  userData: '#!/bin/sh\necho hi\n',
};

describe('AWS IMDSv2 stand-in', () => {
  let server: Server;
  let base: string;
  let clock = 1_000_000;
  const svc = createImdsService(data, () => clock);

  beforeAll(async () => {
    server = createServer((q, s) => svc.handle(q, s));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const a = server.address();
    base = `http://127.0.0.1:${typeof a === 'object' && a ? a.port : 0}`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  const token = async (ttl = '60') => {
    const r = await fetch(`${base}/latest/api/token`, {
      method: 'PUT',
      headers: { 'X-aws-ec2-metadata-token-ttl-seconds': ttl },
    });
    return { status: r.status, text: await r.text() };
  };
  const get = async (path: string, tok?: string) => {
    const r = await fetch(`${base}${path}`, tok ? { headers: { 'X-aws-ec2-metadata-token': tok } } : {});
    return { status: r.status, text: await r.text() };
  };

  it('is the aws plugin’s boot-test metadata service', () => {
    expect(getCloud('aws').bootTestMetadata).toBeTypeOf('function');
    expect(getCloud('nocloud').bootTestMetadata).toBeUndefined();
    expect(svc.address).toBe('169.254.169.254');
    expect(svc.port).toBe(80);
  });

  it('refuses IMDSv1 (no token) and unknown tokens with 401', async () => {
    expect((await get('/latest/meta-data/hostname')).status).toBe(401);
    expect((await get('/latest/meta-data/hostname', 'forged')).status).toBe(401);
  });

  it('hands out a token on PUT with a valid TTL only', async () => {
    expect((await token('0')).status).toBe(400);
    expect((await token('21601')).status).toBe(400);
    expect((await fetch(`${base}/latest/api/token`)).status).toBe(405);
    const t = await token();
    expect(t.status).toBe(200);
    expect(t.text).toMatch(/^[\w-]{20,}$/);
  });

  it('serves the instance data with a token, directories with or without a trailing slash', async () => {
    const { text: t } = await token();
    expect(await get('/latest/meta-data/hostname', t)).toEqual({ status: 200, text: 'boot-test-1' });
    expect(await get('/latest/meta-data/instance-id', t)).toEqual({ status: 200, text: 'i-boottest1' });
    expect(await get('/latest/meta-data/public-keys', t)).toEqual({ status: 200, text: '0=boot-test' });
    expect(await get('/latest/meta-data/public-keys/', t)).toEqual({ status: 200, text: '0=boot-test' });
    expect(await get('/latest/meta-data/public-keys/0/openssh-key', t)).toEqual({
      status: 200,
      text: data.sshPublicKey,
    });
    expect(await get('/latest/user-data', t)).toEqual({ status: 200, text: data.userData });
    expect((await get('/latest/meta-data/', t)).text.split('\n')).toEqual(
      expect.arrayContaining(['hostname', 'instance-id', 'public-keys/', 'network/']),
    );
    expect((await get('/latest/meta-data/nothing', t)).status).toBe(404);
  });

  it('expires tokens after their TTL', async () => {
    const { text: t } = await token('5');
    clock += 6000;
    expect((await get('/latest/meta-data/hostname', t)).status).toBe(401);
  });

  it('logs each request with its status and whether it carried a token', () => {
    const log = svc.requests();
    expect(log).toContain('GET /latest/meta-data/hostname 401');
    expect(log).toContain('PUT /latest/api/token 200');
    expect(log).toContain('GET /latest/meta-data/public-keys/0/openssh-key 200 (token)');
  });
});
