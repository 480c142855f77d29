/**
 * One behaviour suite run against every storage backend: file (bare path and file://), ssh (a real OpenSSH
 * sshd on 127.0.0.1) and s3 (s3rver). Backend-specific cases (connection sharing, host keys, auth, buckets,
 * multipart) follow.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { CreateBucketCommand, HeadObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createStoragePool } from '../../src/storage/index.js';
import type { StoragePool } from '../../src/storage/types.js';
import { UserError } from '../../src/util/errors.js';
import { hashFile } from '../../src/util/fs.js';
import { silentLogger } from '../../src/util/log.js';
import { type MotoHandle, motoUnavailableReason, startMoto } from '../helpers/moto.js';
import { type S3rverHandle, startS3rver } from '../helpers/s3rver.js';
import { freePort, type SshdHandle, sshdUnavailableReason, startSshd } from '../helpers/sshd.js';

const log = silentLogger();
const sshdMissing = sshdUnavailableReason();
if (sshdMissing) console.warn(`skipping ssh:// storage tests: ${sshdMissing}`);

let base: string;
let sshd: SshdHandle | undefined;
let s3: S3rverHandle | undefined;

beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), 'storage-test-'));
  [sshd, s3] = await Promise.all([
    sshdMissing ? undefined : startSshd(),
    startS3rver({ buckets: ['images'] }),
  ]);
});

afterAll(async () => {
  await Promise.all([sshd?.stop(), s3?.stop()]);
  if (base) await rm(base, { recursive: true, force: true });
});

let counter = 0;
/** a fresh local directory */
async function localDir(files: Record<string, string | Buffer> = {}): Promise<string> {
  const dir = join(base, `local-${++counter}`);
  await mkdir(dir, { recursive: true });
  for (const [name, content] of Object.entries(files)) await writeFile(join(dir, name), content);
  return dir;
}

async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected the promise to reject');
}

interface Backend {
  name: string;
  skip?: string;
  env(): Record<string, string>;
  /** a storage URL for a fresh directory `sub` */
  url(sub: string): string;
  /** overwrite a stored object behind the storage's back */
  tamper(sub: string, file: string, content: string): Promise<void>;
  /** the directory behind `sub`, for backends that write temporary names (file, ssh) */
  rawDir?(sub: string): string;
}

const backends: Backend[] = [
  {
    name: 'bare path',
    env: () => ({}),
    url: (sub) => join(base, 'file-store', sub),
    tamper: (sub, file, content) => writeFile(join(base, 'file-store', sub, file), content),
    rawDir: (sub) => join(base, 'file-store', sub),
  },
  {
    name: 'file://',
    env: () => ({}),
    url: (sub) => pathToFileURL(join(base, 'file-url-store', sub)).href,
    tamper: (sub, file, content) => writeFile(join(base, 'file-url-store', sub, file), content),
    rawDir: (sub) => join(base, 'file-url-store', sub),
  },
  {
    name: 'ssh://',
    ...(sshdMissing ? { skip: sshdMissing } : {}),
    env: () => sshd!.env,
    // relative to the (test) home directory of the remote user
    url: (sub) => `${sshd!.urlPrefix}/store/${sub}`,
    tamper: (sub, file, content) => writeFile(join(sshd!.home, 'store', sub, file), content),
    rawDir: (sub) => join(sshd!.home, 'store', sub),
  },
  {
    name: 's3://',
    env: () => s3!.env,
    url: (sub) => `s3://images/store/${sub}`,
    tamper: async (sub, file, content) => {
      const client = new S3Client(s3!.clientConfig);
      await client.send(
        new PutObjectCommand({ Bucket: 'images', Key: `store/${sub}/${file}`, Body: content }),
      );
      client.destroy();
    },
  },
];

describe.each(backends)('storage behaviour: $name', (b) => {
  let pool: StoragePool;
  beforeAll(() => {
    if (!b.skip) pool = createStoragePool({ log, env: { ...process.env, ...b.env() } });
  });
  afterAll(async () => {
    await pool?.close();
  });
  const test = it.skipIf(b.skip !== undefined);

  test('round trip with checksums', async () => {
    const src = await localDir({ 'a.qcow2': randomBytes(300_000), 'a.yaml': 'name: a\n' });
    const st = pool.get(b.url('round'));
    await st.store(src, ['a.qcow2', 'a.yaml'], { checksum: true });
    // the .sha512 files are written locally too, hex digest only
    const digest = await hashFile(join(src, 'a.qcow2'));
    expect(await readFile(join(src, 'a.qcow2.sha512'), 'utf8')).toBe(`${digest}\n`);
    expect(await st.list()).toEqual(['a.qcow2', 'a.qcow2.sha512', 'a.yaml', 'a.yaml.sha512']);
    // no temporary objects are left behind
    expect(await st.list('.*')).toEqual([]);

    const dst = await localDir();
    await st.retrieve(dst, ['a.qcow2', 'a.yaml'], { checksum: true });
    expect(await readFile(join(dst, 'a.qcow2'))).toEqual(await readFile(join(src, 'a.qcow2')));
    expect(await readFile(join(dst, 'a.yaml'), 'utf8')).toBe('name: a\n');
    expect(await readFile(join(dst, 'a.qcow2.sha512'), 'utf8')).toBe(`${digest}\n`);
    expect((await readdir(dst)).sort()).toEqual(['a.qcow2', 'a.qcow2.sha512', 'a.yaml', 'a.yaml.sha512']);
  });

  test('store without checksum, overwrite, retrieve without checksum; empty files', async () => {
    const st = pool.get(b.url('plain'));
    const src = await localDir({ 'm.yaml': 'v: 1\n', empty: '' });
    await st.store(src, ['m.yaml', 'empty']);
    await st.retrieve(await localDir(), ['empty']);
    await writeFile(join(src, 'm.yaml'), 'v: 2\n');
    await st.store(src, ['m.yaml']);
    expect(await st.list()).toEqual(['empty', 'm.yaml']);
    const dst = await localDir({ 'm.yaml': 'old local copy\n' });
    await st.retrieve(dst, ['m.yaml', 'empty']);
    expect(await readFile(join(dst, 'm.yaml'), 'utf8')).toBe('v: 2\n');
    expect(await readFile(join(dst, 'empty'), 'utf8')).toBe('');
  });

  test('checksum mismatch on retrieve is an error naming the URL and file, and keeps no file', async () => {
    const st = pool.get(b.url('tamper'));
    const src = await localDir({ 'img.vhd': randomBytes(50_000) });
    await st.store(src, ['img.vhd'], { checksum: true });
    await b.tamper('tamper', 'img.vhd', 'not the image');
    const dst = await localDir();
    const err = await rejection(st.retrieve(dst, ['img.vhd'], { checksum: true }));
    expect(err).toBeInstanceOf(UserError);
    expect(err.message).toContain(`${st.url}/img.vhd`);
    expect(err.message).toMatch(/checksum mismatch/);
    expect(await readdir(dst)).toEqual([]);
  });

  test('retrieving a missing file, or a file without its .sha512, is an error naming it', async () => {
    const st = pool.get(b.url('missing-file'));
    const src = await localDir({ 'only.yaml': 'x\n' });
    await st.store(src, ['only.yaml']);
    const dst = await localDir();
    const e1 = await rejection(st.retrieve(dst, ['nope.yaml']));
    expect(e1).toBeInstanceOf(UserError);
    expect(e1.message).toBe(`${st.url}/nope.yaml: not found in storage`);
    const e2 = await rejection(st.retrieve(dst, ['only.yaml'], { checksum: true }));
    expect(e2.message).toBe(`${st.url}/only.yaml.sha512: not found in storage`);
    expect(await readdir(dst)).toEqual([]);
  });

  test('list with globs', async () => {
    const st = pool.get(b.url('globs'));
    const names = [
      'alpine-3.20.1-aws-r0.yaml',
      'alpine-3.20.1-aws-r1.yaml',
      'alpine-3.20.1-aws-r10.yaml',
      'alpine-3.20.1-aws-r1.yaml.sha512',
      'alpine-3.20.1-azure-r0.yaml',
      'other.txt',
    ];
    const src = await localDir(Object.fromEntries(names.map((n) => [n, n])));
    await st.store(src, names);
    expect(await st.list('alpine-3.20.1-aws-r*.yaml')).toEqual([
      'alpine-3.20.1-aws-r0.yaml',
      'alpine-3.20.1-aws-r1.yaml',
      'alpine-3.20.1-aws-r10.yaml',
    ]);
    expect(await st.list('alpine-3.20.1-aws-r?.yaml')).toEqual([
      'alpine-3.20.1-aws-r0.yaml',
      'alpine-3.20.1-aws-r1.yaml',
    ]);
    expect(await st.list('*.sha512')).toEqual(['alpine-3.20.1-aws-r1.yaml.sha512']);
    expect(await st.list('other.txt')).toEqual(['other.txt']);
    expect(await st.list('alpine-3.20.1-gcp-*')).toEqual([]);
    expect(await st.list()).toHaveLength(names.length);
  });

  test('remove ignores missing files', async () => {
    const st = pool.get(b.url('remove'));
    const src = await localDir({ 'a.yaml': 'a', 'b.yaml': 'b' });
    await st.store(src, ['a.yaml', 'b.yaml'], { checksum: true });
    await st.remove(['a.yaml', 'a.yaml.sha512', 'never-there.yaml']);
    expect(await st.list()).toEqual(['b.yaml', 'b.yaml.sha512']);
    await st.remove(['a.yaml']);
    expect(await st.list()).toEqual(['b.yaml', 'b.yaml.sha512']);
  });

  test('a missing directory lists as empty and is created by store', async () => {
    const st = pool.get(b.url('deep/not/yet/there'));
    expect(await st.list()).toEqual([]);
    expect(await st.list('*.yaml')).toEqual([]);
    await st.remove(['x.yaml']);
    await st.store(await localDir({ 'x.yaml': 'x' }), ['x.yaml']);
    expect(await st.list('*.yaml')).toEqual(['x.yaml']);
  });

  // s3 writes no temporary objects, so this applies to file and ssh only
  if (b.rawDir)
    test('a store removes what killed writers on this host left behind, and nothing else', async () => {
      const st = pool.get(b.url('leftovers'));
      const src = await localDir({ 'img.qcow2': 'new image' });
      await st.store(src, ['img.qcow2'], { checksum: true });
      const dir = b.rawDir!('leftovers');
      const dead = spawnSync('true').pid;
      const host = hostname().replace(/[^A-Za-z0-9.-]/g, '_');
      const left = [
        `.img.qcow2.${host}.${dead}.0badc0de.tmp`, // killed writer here: removed
        `.img.qcow2.sha512.${host}.${dead}.0badc0df.tmp`, // ditto
        `.img.qcow2.${host}.1.0badc0de.tmp`, // pid 1 is alive: kept
        `.img.qcow2.other-host.${dead}.0badc0de.tmp`, // another machine's writer: kept
        `.other.yaml.${host}.${dead}.0badc0de.tmp`, // not a file this store wrote: kept
      ];
      // abandoned longer than the grace period (one hour by default): removed, whoever wrote them
      const abandoned = [`.img.qcow2.other-host.77.0badc0e0.tmp`, `.x.yaml.${host}.1.0badc0e1.tmp`];
      for (const n of left) await writeFile(join(dir, n), 'partial');
      const old = new Date(Date.now() - 2 * 3600_000);
      for (const n of abandoned) {
        await writeFile(join(dir, n), 'partial');
        await utimes(join(dir, n), old, old);
      }
      await st.store(src, ['img.qcow2'], { checksum: true });
      expect((await readdir(dir)).sort()).toEqual(['img.qcow2', 'img.qcow2.sha512', ...left.slice(2)].sort());
      expect(await st.list()).toEqual(['img.qcow2', 'img.qcow2.sha512']);
    });

  test('file names with a directory part are refused', async () => {
    const st = pool.get(b.url('names'));
    const err = await rejection(st.retrieve(await localDir(), ['../escape.yaml']));
    expect(err).toBeInstanceOf(UserError);
    expect(err.message).toContain('"../escape.yaml" is not a plain file name');
  });

  test('many parallel stores and retrieves through one pool', async () => {
    const n = 24;
    const content = (i: number) => `image ${i}\n${'x'.repeat(i * 1000)}`;
    await Promise.all(
      Array.from({ length: n }, async (_, i) => {
        // four images share each directory, as variants of one version/cloud/arch do
        const st = pool.get(b.url(`parallel/d${i % 6}`));
        const src = await localDir({ [`img-${i}.yaml`]: content(i) });
        await st.store(src, [`img-${i}.yaml`], { checksum: true });
        const dst = await localDir();
        await st.retrieve(dst, [`img-${i}.yaml`], { checksum: true });
        expect(await readFile(join(dst, `img-${i}.yaml`), 'utf8')).toBe(content(i));
        expect(await st.list(`img-${i}.*`)).toEqual([`img-${i}.yaml`, `img-${i}.yaml.sha512`]);
      }),
    );
    const all = await Promise.all(
      Array.from({ length: 6 }, (_, d) => pool.get(b.url(`parallel/d${d}`)).list()),
    );
    expect(all.flat()).toHaveLength(2 * n);
    if (b.name === 'ssh://') expect(pool.stats().sshConnections).toBe(1);
    else expect(pool.stats().sshConnections).toBe(0);
  });
});

describe('storage URLs', () => {
  it('an unknown scheme is a UserError naming the URL', () => {
    const pool = createStoragePool({ log, env: {} });
    expect(() => pool.get('ftp://example.org/images')).toThrow(UserError);
    expect(() => pool.get('ftp://example.org/images')).toThrow(
      /ftp:\/\/example\.org\/images.*unsupported scheme/,
    );
  });

  it('storing a local file that does not exist names it', async () => {
    const pool = createStoragePool({ log, env: {} });
    const dir = await localDir();
    const st = pool.get(join(base, 'never'));
    const err = await rejection(st.store(dir, ['missing.qcow2'], { checksum: true }));
    expect(err).toBeInstanceOf(UserError);
    expect(err.message).toMatch(
      new RegExp(`^${join(dir, 'missing.qcow2')}: cannot store it in ${st.url}: ENOENT`),
    );
    expect(await st.list()).toEqual([]);
  });

  it('a bare relative path is relative to the working directory', async () => {
    const cwd = await localDir();
    const pool = createStoragePool({ log, env: {}, cwd });
    const st = pool.get('rel/store');
    await st.store(await localDir({ 'f.txt': 'f' }), ['f.txt']);
    expect(await readdir(join(cwd, 'rel', 'store'))).toEqual(['f.txt']);
    expect(pool.get(`file://${join(cwd, 'rel', 'store')}`).url).toBe(`file://${join(cwd, 'rel', 'store')}`);
    expect(await pool.get(`file://${join(cwd, 'rel', 'store')}`).list()).toEqual(['f.txt']);
    await pool.close();
    expect(() => pool.get('rel/store')).toThrow(/closed/);
  });
});

describe.skipIf(sshdMissing !== undefined)('ssh:// storage', () => {
  it('absolute paths (ssh://host//abs) and the home directory', async () => {
    const pool = createStoragePool({ log, env: { ...process.env, ...sshd!.env } });
    try {
      const abs = join(base, 'ssh-abs');
      const st = pool.get(`${sshd!.urlPrefix}/${abs}`);
      expect(st.url).toBe(`${sshd!.urlPrefix}/${abs}`);
      await st.store(await localDir({ 'a.txt': 'a' }), ['a.txt']);
      expect(await readdir(abs)).toEqual(['a.txt']);
      const home = pool.get(`${sshd!.urlPrefix}/`);
      await home.store(await localDir({ 'in-home.txt': 'h' }), ['in-home.txt']);
      expect(await readFile(join(sshd!.home, 'in-home.txt'), 'utf8')).toBe('h');
      expect(pool.stats().sshConnections).toBe(1);
    } finally {
      await pool.close();
    }
  });

  it('one connection per host for the whole pool, seen by the server too', async () => {
    const before = sshd!.acceptedConnections();
    const pool = createStoragePool({ log, env: { ...process.env, ...sshd!.env } });
    try {
      const urls = Array.from({ length: 40 }, (_, i) => `${sshd!.urlPrefix}/conn/v${i}`);
      await Promise.all(urls.map((u) => pool.get(u).list('*.yaml')));
      await Promise.all(
        urls.map(async (u, i) => pool.get(u).store(await localDir({ 'm.yaml': `${i}` }), ['m.yaml'])),
      );
      expect(pool.stats().sshConnections).toBe(1);
      expect(sshd!.acceptedConnections() - before).toBe(1);
    } finally {
      await pool.close();
    }
  });

  it('a connection lost mid-run is replaced, and operations in flight are retried on the new one', async () => {
    const pool = createStoragePool({ log, env: { ...process.env, ...sshd!.env } });
    try {
      const st = pool.get(`${sshd!.urlPrefix}/drop`);
      const big = randomBytes(8 * 1024 * 1024);
      const src = await localDir({ 'a.txt': 'a', 'big.raw': big });
      await st.store(src, ['a.txt']);
      await sshd!.dropConnections();
      expect(await st.list()).toEqual(['a.txt']);
      expect(pool.stats().sshConnections).toBe(2);

      // drop the connection while an upload and many small operations are in flight
      const upload = st.store(src, ['big.raw'], { checksum: true });
      const small = Array.from({ length: 20 }, () => st.retrieve(join(src, 'back'), ['a.txt']));
      await new Promise((r) => setTimeout(r, 30));
      await sshd!.dropConnections();
      await Promise.all([upload, ...small]);
      const dst = await localDir();
      await st.retrieve(dst, ['big.raw'], { checksum: true });
      expect((await readFile(join(dst, 'big.raw'))).equals(big)).toBe(true);
      expect(await st.list()).toEqual(['a.txt', 'big.raw', 'big.raw.sha512']);
      // the upload cut off by the drop left a partial file; the writer removed it on the new connection
      expect((await readdir(join(sshd!.home, 'drop'))).sort()).toEqual([
        'a.txt',
        'big.raw',
        'big.raw.sha512',
      ]);
      expect(pool.stats().sshConnections).toBeGreaterThanOrEqual(2);
      expect(pool.stats().sshConnections).toBeLessThanOrEqual(3);
    } finally {
      await pool.close();
    }
  });

  it('an unreachable host (closed port) is one clear error naming the URL, quickly', async () => {
    const port = await freePort();
    const pool = createStoragePool({ log, env: { ...process.env, ...sshd!.env } });
    try {
      const url = `ssh://root@127.0.0.1:${port}/images`;
      const started = Date.now();
      const errors = await Promise.all([1, 2, 3].map(() => rejection(pool.get(url).list())));
      expect(Date.now() - started).toBeLessThan(5000);
      for (const err of errors) {
        expect(err).toBeInstanceOf(UserError);
        expect(err.message).toBe(
          `${url}: cannot connect to ssh server root@127.0.0.1:${port}: connection refused`,
        );
      }
      expect(pool.stats().sshConnections).toBe(0);
    } finally {
      await pool.close();
    }
  });

  it('a server that never completes the handshake times out (BUILD_SSH_CONNECT_TIMEOUT) instead of hanging', async () => {
    const { createServer } = await import('node:net');
    const sockets: import('node:net').Socket[] = [];
    const silent = createServer((sock) => sockets.push(sock));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const port = (silent.address() as import('node:net').AddressInfo).port;
    const pool = createStoragePool({
      log,
      env: { ...process.env, ...sshd!.env, BUILD_SSH_CONNECT_TIMEOUT: '1' },
    });
    try {
      const url = `ssh://u@127.0.0.1:${port}/x`;
      const started = Date.now();
      const err = await rejection(pool.get(url).list());
      expect(Date.now() - started).toBeLessThan(4000);
      expect(err).toBeInstanceOf(UserError);
      expect(err.message).toBe(
        `${url}: cannot connect to ssh server u@127.0.0.1:${port}: no ssh handshake within 1 s (BUILD_SSH_CONNECT_TIMEOUT)`,
      );
    } finally {
      await pool.close();
      for (const s of sockets) s.destroy();
      await new Promise((r) => silent.close(r));
    }
  });

  it('an unknown host key is refused unless accept-new, which records it', async () => {
    const knownHosts = join(await localDir(), 'known_hosts');
    const env = { ...process.env, ...sshd!.env, BUILD_SSH_KNOWN_HOSTS: knownHosts };
    const url = `${sshd!.urlPrefix}/hk`;
    await writeFile(knownHosts, '');
    const strict = createStoragePool({ log, env });
    const err = await rejection(strict.get(url).list());
    await strict.close();
    expect(err).toBeInstanceOf(UserError);
    expect(err.message).toContain(`${url}: host [127.0.0.1]:${sshd!.port} is not in known_hosts`);

    const acceptNew = createStoragePool({
      log,
      env: { ...env, BUILD_SSH_STRICT_HOST_KEY_CHECKING: 'accept-new' },
    });
    expect(await acceptNew.get(url).list()).toEqual([]);
    await acceptNew.close();
    const recorded = await readFile(knownHosts, 'utf8');
    const expected = (await readFile(sshd!.knownHostsFile, 'utf8')).trim();
    expect(recorded.trim()).toBe(expected);

    // and from then on strict checking accepts it
    const again = createStoragePool({ log, env });
    expect(await again.get(url).list()).toEqual([]);
    await again.close();
  });

  it('a changed host key is refused as a mismatch', async () => {
    const dir = await localDir();
    const knownHosts = join(dir, 'known_hosts');
    // some other ed25519 key for this host and port
    const otherKey = (await readFile(`${sshd!.keyFile}.pub`, 'utf8'))
      .trim()
      .split(/\s+/)
      .slice(0, 2)
      .join(' ');
    await writeFile(knownHosts, `[127.0.0.1]:${sshd!.port} ${otherKey}\n`);
    const pool = createStoragePool({
      log,
      env: {
        ...process.env,
        ...sshd!.env,
        BUILD_SSH_KNOWN_HOSTS: knownHosts,
        BUILD_SSH_STRICT_HOST_KEY_CHECKING: 'accept-new',
      },
    });
    const err = await rejection(pool.get(`${sshd!.urlPrefix}/x`).list());
    await pool.close();
    expect(err.message).toMatch(/HOST KEY MISMATCH for \[127\.0\.0\.1\]:\d+/);
  });

  it('a key the server does not accept is an authentication error', async () => {
    const dir = await localDir();
    const { execFileSync } = await import('node:child_process');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'stranger')]);
    const pool = createStoragePool({
      log,
      env: { ...process.env, ...sshd!.env, BUILD_SSH_KEY: join(dir, 'stranger'), HOME: dir },
    });
    const url = `${sshd!.urlPrefix}/x`;
    const err = await rejection(pool.get(url).list());
    await pool.close();
    expect(err.message).toBe(
      `${url}: ssh authentication failed for ${sshd!.user}@127.0.0.1:${sshd!.port} (tried: key ${join(dir, 'stranger')})`,
    );
  });

  it('like ssh: ~/.ssh/config aliases, default identity files and known_hosts', async () => {
    const home = await localDir();
    await mkdir(join(home, '.ssh'));
    await writeFile(join(home, '.ssh', 'id_ed25519'), await readFile(sshd!.keyFile), { mode: 0o600 });
    await writeFile(join(home, '.ssh', 'known_hosts'), await readFile(sshd!.knownHostsFile));
    await writeFile(
      join(home, '.ssh', 'config'),
      `Host storagebox\n  HostName 127.0.0.1\n  Port ${sshd!.port}\n  User ${sshd!.user}\n\nHost *\n  ConnectTimeout 5\n`,
    );
    const env: NodeJS.ProcessEnv = { ...process.env, HOME: home, SSH_AUTH_SOCK: '' };
    for (const k of [
      'BUILD_SSH_KEY',
      'BUILD_SSH_KNOWN_HOSTS',
      'BUILD_SSH_CONFIG',
      'BUILD_SSH_STRICT_HOST_KEY_CHECKING',
    ]) {
      delete env[k];
    }
    const pool = createStoragePool({ log, env });
    try {
      const st = pool.get('ssh://storagebox/alias');
      await st.store(await localDir({ 'a.txt': 'via alias' }), ['a.txt']);
      expect(await readFile(join(sshd!.home, 'alias', 'a.txt'), 'utf8')).toBe('via alias');
    } finally {
      await pool.close();
    }
  });

  it('ssh-agent (SSH_AUTH_SOCK)', async () => {
    const { spawn, execFileSync } = await import('node:child_process');
    const dir = await mkdtemp(join(tmpdir(), 'agent-'));
    const sock = join(dir, 'agent.sock');
    const agent = spawn('ssh-agent', ['-D', '-a', sock], { stdio: 'ignore' });
    try {
      for (let i = 0; i < 50; i++) {
        try {
          execFileSync('ssh-add', [sshd!.keyFile], {
            env: { ...process.env, SSH_AUTH_SOCK: sock },
            stdio: 'ignore',
          });
          break;
        } catch {
          await new Promise((r) => setTimeout(r, 100));
        }
      }
      const env: NodeJS.ProcessEnv = { ...process.env, ...sshd!.env, SSH_AUTH_SOCK: sock, HOME: dir };
      delete env.BUILD_SSH_KEY;
      const pool = createStoragePool({ log, env });
      try {
        expect(await pool.get(`${sshd!.urlPrefix}/agent`).list()).toEqual([]);
        expect(pool.stats().sshConnections).toBe(1);
      } finally {
        await pool.close();
      }
    } finally {
      agent.kill();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('s3:// storage', () => {
  it('a missing bucket is one clear error naming the URL', async () => {
    const pool = createStoragePool({ log, env: { ...process.env, ...s3!.env } });
    try {
      const st = pool.get('s3://no-such-bucket/images');
      const e1 = await rejection(st.list());
      expect(e1).toBeInstanceOf(UserError);
      expect(e1.message).toBe(
        's3://no-such-bucket/images: list failed: bucket "no-such-bucket" does not exist',
      );
      const e2 = await rejection(st.store(await localDir({ 'a.txt': 'a' }), ['a.txt']));
      expect(e2.message).toBe(
        's3://no-such-bucket/images/a.txt: store failed: bucket "no-such-bucket" does not exist',
      );
    } finally {
      await pool.close();
    }
  });

  it('an unreachable endpoint is one clear error naming the URL', async () => {
    const port = await freePort();
    const endpoint = `http://127.0.0.1:${port}`;
    const pool = createStoragePool({
      log,
      env: { ...process.env, ...s3!.env, AWS_ENDPOINT_URL_S3: endpoint },
    });
    try {
      const err = await rejection(pool.get('s3://images/x').list());
      expect(err).toBeInstanceOf(UserError);
      expect(err.message).toBe(`s3://images/x: list failed: cannot reach ${endpoint}: connection refused`);
    } finally {
      await pool.close();
    }
  });

  it('large files go up as a multipart upload and come back intact', async () => {
    const pool = createStoragePool({ log, env: { ...process.env, ...s3!.env }, s3PartSize: 5 * 1024 * 1024 });
    try {
      const st = pool.get('s3://images/multipart');
      const big = randomBytes(11 * 1024 * 1024 + 123);
      const src = await localDir({ 'big.qcow2': big });
      await st.store(src, ['big.qcow2'], { checksum: true });
      const dst = await localDir();
      await st.retrieve(dst, ['big.qcow2'], { checksum: true });
      expect((await readFile(join(dst, 'big.qcow2'))).equals(big)).toBe(true);
      // s3rver keeps the object whole; no leftover parts are listed
      expect(await st.list()).toEqual(['big.qcow2', 'big.qcow2.sha512']);
    } finally {
      await pool.close();
    }
  });

  it('the data object carries its sha512, checked right after the upload', async () => {
    const pool = createStoragePool({ log, env: { ...process.env, ...s3!.env }, s3PartSize: 5 * 1024 * 1024 });
    try {
      const src = await localDir({ 'big.img': randomBytes(11 * 1024 * 1024) });
      await pool.get('s3://images/verified').store(src, ['big.img'], { checksum: true });
      const client = new S3Client(s3!.clientConfig);
      const h = await client.send(new HeadObjectCommand({ Bucket: 'images', Key: 'verified/big.img' }));
      client.destroy();
      expect(h.Metadata?.sha512).toBe(await hashFile(join(src, 'big.img')));
    } finally {
      await pool.close();
    }
  });

  it('the bucket root (s3://bucket) works as a directory', async () => {
    const pool = createStoragePool({ log, env: { ...process.env, ...s3!.env } });
    try {
      const st = pool.get('s3://images');
      await st.store(await localDir({ 'root.txt': 'r' }), ['root.txt']);
      expect(await st.list('root.*')).toEqual(['root.txt']);
      // objects under prefixes are not files of the root directory
      expect(await st.list('store*')).toEqual([]);
    } finally {
      await pool.close();
    }
  });
});

// moto stores objects atomically (s3rver writes an object's data and metadata separately, so a race there can
// tear an object): the concurrent-writers property is checked against moto
describe('s3:// storage against moto', () => {
  const reason = motoUnavailableReason();
  let moto: MotoHandle | undefined;
  beforeAll(async () => {
    if (reason) return;
    moto = await startMoto();
    const client = new S3Client({
      endpoint: moto.endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' },
    });
    await client.send(new CreateBucketCommand({ Bucket: 'images' }));
    client.destroy();
  }, 60_000);
  afterAll(async () => {
    await moto?.stop();
  });

  it.skipIf(reason !== undefined)(
    `two writers of one object at once: the stored checksum always describes the stored data${reason ? ` (skipped: ${reason})` : ''}`,
    async () => {
      const pools = [0, 1].map(() => createStoragePool({ log, env: { ...process.env, ...moto!.env } }));
      try {
        for (let round = 0; round < 6; round++) {
          const srcs = await Promise.all(
            [0, 1].map((w) => localDir({ 'race.img': `writer ${w} round ${round} ${'y'.repeat(w * 5000)}` })),
          );
          const results = await Promise.allSettled(
            pools.map((p, w) => p.get('s3://images/race').store(srcs[w]!, ['race.img'], { checksum: true })),
          );
          // a writer whose upload was replaced before it could check it says so (and writes no checksum)
          for (const r of results) {
            if (r.status === 'rejected') expect(String(r.reason)).toContain('replaced by another writer');
          }
          expect(results.some((r) => r.status === 'fulfilled')).toBe(true);
          const dst = await localDir();
          // retrieve checks the data against the stored .sha512
          await pools[0]!.get('s3://images/race').retrieve(dst, ['race.img'], { checksum: true });
          expect(await readFile(join(dst, 'race.img'), 'utf8')).toMatch(
            new RegExp(`^writer [01] round ${round}`),
          );
        }
      } finally {
        await Promise.all(pools.map((p) => p.close()));
      }
    },
    60_000,
  );
});
