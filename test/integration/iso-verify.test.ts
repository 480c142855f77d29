// Builder ISO download and verification: a local mirror (file:// and a real HTTP server on 127.0.0.1) holding a
// small "ISO" with .sha256/.sha512/.asc files signed by a throwaway OpenPGP key made here.

import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as openpgp from 'openpgp';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { downloadFile, fetchText, NotFoundError } from '../../src/local/download.js';
import {
  checksumFor,
  fetchVerifiedIso,
  loadTrustedKeys,
  type TrustedKeys,
  verifySignature,
} from '../../src/local/iso.js';
import {
  makeTestKey,
  memoryLog,
  publishIso,
  REPO_ROOT,
  sha,
  type TestKey,
} from '../fixtures/local/mirror.js';

let base: string;
let key: TestKey;
let trusted: TrustedKeys;
let source: string;

beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), 'iso-verify-'));
  key = await makeTestKey();
  const keys = join(base, 'keys');
  await mkdir(keys);
  await writeFile(join(keys, 'test.asc'), key.publicArmored);
  trusted = await loadTrustedKeys([keys]);
  source = join(base, 'source.iso');
  const data = Buffer.alloc(3 * 1024 * 1024);
  for (let i = 0; i < data.length; i += 4096) data.write(`block ${i}`, i);
  await writeFile(source, data);
});

afterAll(async () => {
  await rm(base, { recursive: true, force: true });
});

let n = 0;
async function mirror(opts: Parameters<typeof publishIso>[2] extends infer O ? Partial<O> : never) {
  n++;
  const cdn = join(base, `cdn${n}`);
  const m = await publishIso(cdn, source, {
    version: '3.24',
    release: '3.24.1',
    arch: 'x86_64',
    key,
    ...opts,
  });
  return { ...m, cacheDir: join(base, `cache${n}`) };
}

describe('fetchVerifiedIso', () => {
  it('downloads, checks both checksums and the signature, and caches the ISO', async () => {
    const m = await mirror({});
    const mem = memoryLog();
    const r = await fetchVerifiedIso(m.isoUrl, { cacheDir: m.cacheDir, trusted, log: mem.log });
    expect(r.cached).toBe(false);
    expect(r.path).toBe(join(m.cacheDir, 'alpine-virt-3.24.1-x86_64.iso'));
    expect(r.sha512).toBe(await sha(source, 'sha512'));
    expect(r.sha256).toBe(await sha(source, 'sha256'));
    expect(r.packerChecksum).toBe(`sha512:${r.sha512}`);
    expect(r.signedBy).toBe(key.fingerprint);
    expect(mem.text()).toMatch(/verified alpine-virt-3\.24\.1-x86_64\.iso: checksum and signature good/);

    // a second run uses the cache (no download) and verifies it again
    await rm(m.isoPath);
    const again = await fetchVerifiedIso(m.isoUrl, { cacheDir: m.cacheDir, trusted, log: mem.log });
    expect(again.cached).toBe(true);
    expect(again.sha512).toBe(r.sha512);
  });

  it('works with only a .sha256 file', async () => {
    const m = await mirror({ sha512: 'none' });
    const r = await fetchVerifiedIso(m.isoUrl, { cacheDir: m.cacheDir, trusted, log: memoryLog().log });
    expect(r.sha512).toBeUndefined();
    expect(r.packerChecksum).toBe(`sha256:${await sha(source, 'sha256')}`);
  });

  it('bad sha256: a hard error naming the file, and the download is removed', async () => {
    const m = await mirror({ sha256: 'bad' });
    const err = fetchVerifiedIso(m.isoUrl, { cacheDir: m.cacheDir, trusted, log: memoryLog().log });
    await expect(err).rejects.toThrow(
      /checksum mismatch for .*alpine-virt-3\.24\.1-x86_64\.iso: .*\.iso\.sha256 says/,
    );
    await expect(stat(join(m.cacheDir, 'alpine-virt-3.24.1-x86_64.iso'))).rejects.toThrow();
  });

  it('bad sha512: a hard error', async () => {
    const m = await mirror({ sha512: 'bad' });
    await expect(
      fetchVerifiedIso(m.isoUrl, { cacheDir: m.cacheDir, trusted, log: memoryLog().log }),
    ).rejects.toThrow(/checksum mismatch .*\.iso\.sha512 says/);
  });

  it('no checksum file at all: a hard error', async () => {
    const m = await mirror({ sha256: 'none', sha512: 'none' });
    await expect(
      fetchVerifiedIso(m.isoUrl, { cacheDir: m.cacheDir, trusted, log: memoryLog().log }),
    ).rejects.toThrow(/no checksum for .*neither .*\.sha512 nor .*\.sha256 exists/);
  });

  it('bad signature (the trusted key, other data): a hard error naming the .asc file', async () => {
    const m = await mirror({ signature: 'bad' });
    await expect(
      fetchVerifiedIso(m.isoUrl, { cacheDir: m.cacheDir, trusted, log: memoryLog().log }),
    ).rejects.toThrow(/signature check failed for .*alpine-virt-3\.24\.1-x86_64\.iso\.asc/);
    await expect(stat(join(m.cacheDir, 'alpine-virt-3.24.1-x86_64.iso'))).rejects.toThrow();
  });

  it('signature by a key that is not trusted: a hard error', async () => {
    const m = await mirror({ signature: 'other-key' });
    await expect(
      fetchVerifiedIso(m.isoUrl, { cacheDir: m.cacheDir, trusted, log: memoryLog().log }),
    ).rejects.toThrow(
      /signature .*\.iso\.asc was made by key [0-9a-f]{16}, which is not a trusted release signing key/,
    );
  });

  it('missing signature: a hard error, before the ISO is downloaded', async () => {
    const m = await mirror({ signature: 'none' });
    await expect(
      fetchVerifiedIso(m.isoUrl, { cacheDir: m.cacheDir, trusted, log: memoryLog().log }),
    ).rejects.toThrow(
      /missing signature .*alpine-virt-3\.24\.1-x86_64\.iso\.asc for alpine-virt-3\.24\.1-x86_64\.iso/,
    );
    await expect(stat(join(m.cacheDir, 'alpine-virt-3.24.1-x86_64.iso'))).rejects.toThrow();
  });

  it('a cached ISO that was changed afterwards is rejected and removed', async () => {
    const m = await mirror({});
    const r = await fetchVerifiedIso(m.isoUrl, { cacheDir: m.cacheDir, trusted, log: memoryLog().log });
    await writeFile(r.path, 'tampered');
    await expect(
      fetchVerifiedIso(m.isoUrl, { cacheDir: m.cacheDir, trusted, log: memoryLog().log }),
    ).rejects.toThrow(/checksum mismatch/);
    await expect(stat(r.path)).rejects.toThrow();
    // and the next run downloads it afresh
    const fresh = await fetchVerifiedIso(m.isoUrl, { cacheDir: m.cacheDir, trusted, log: memoryLog().log });
    expect(fresh.cached).toBe(false);
  });

  it('a missing ISO on the mirror names the URL', async () => {
    const m = await mirror({});
    await rm(m.isoPath);
    await expect(
      fetchVerifiedIso(m.isoUrl, { cacheDir: m.cacheDir, trusted, log: memoryLog().log }),
    ).rejects.toThrow(/not found: file:\/\/.*alpine-virt-3\.24\.1-x86_64\.iso$/);
  });
});

describe('trusted keys', () => {
  it("ships Alpine's release signing key (ncopa) in keys/", async () => {
    const t = await loadTrustedKeys([join(REPO_ROOT, 'keys')]);
    expect(t.keys.map((k) => k.getFingerprint())).toContain('0482d84022f52df1c4e7cd43293acd0907d9495a');
    // usable for verifying signatures (self-signatures valid, not expired)
    const k = t.keys.find((x) => x.getFingerprint() === '0482d84022f52df1c4e7cd43293acd0907d9495a')!;
    expect(await k.getSigningKey()).toBeTruthy();
  });

  it('refuses a private key in keys/, and a file that is no key', async () => {
    const dir = join(base, 'badkeys');
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'private.asc'), key.privateKey.armor());
    await expect(loadTrustedKeys([dir])).rejects.toThrow(/private\.asc: holds a private key/);
    await rm(join(dir, 'private.asc'));
    await writeFile(join(dir, 'junk.asc'), 'hello');
    await expect(loadTrustedKeys([dir])).rejects.toThrow(/junk\.asc: not an OpenPGP public key/);
  });

  it('no trusted keys at all is an error, not a pass', async () => {
    const file = join(base, 'data.bin');
    await writeFile(file, 'data');
    await expect(verifySignature(file, 'x', { keys: [], files: [] }, 'data.bin.asc')).rejects.toThrow(
      /cannot check data\.bin\.asc: no trusted release signing keys/,
    );
  });

  it('a garbled signature file is named', async () => {
    const file = join(base, 'data2.bin');
    await writeFile(file, 'data');
    await expect(verifySignature(file, 'garbage', trusted, 'data2.bin.asc')).rejects.toThrow(
      /bad signature file data2\.bin\.asc/,
    );
  });
});

describe('checksum files', () => {
  const d256 = 'a'.repeat(64);
  const d512 = 'b'.repeat(128);
  it('reads sha256sum-style lines, picking the named file', () => {
    expect(checksumFor(`${d256}  x.iso\n`, 'x.iso', 'u')).toBe(d256);
    expect(checksumFor(`${d256}\n`, 'x.iso', 'u')).toBe(d256);
    expect(checksumFor(`${d512} *other.iso\n${d256}  x.iso\n`, 'x.iso', 'u')).toBe(d256);
    expect(checksumFor(`${d512.toUpperCase()}  dir/x.iso`, 'x.iso', 'u')).toBe(d512);
    expect(() => checksumFor('not a checksum', 'x.iso', 'http://m/x.iso.sha256')).toThrow(
      /http:\/\/m\/x\.iso\.sha256: no sha256\/sha512 checksum for x\.iso/,
    );
    expect(() => checksumFor(`${d256}  a.iso\n${d256}  b.iso\n`, 'x.iso', 'u')).toThrow(/no sha256/);
  });
});

describe('downloads over HTTP', () => {
  let server: Server;
  let url: string;
  let requests: { range?: string }[] = [];
  let payload: Buffer;
  let ignoreRange = false;

  beforeAll(async () => {
    payload = Buffer.alloc(1024 * 1024);
    for (let i = 0; i < payload.length; i++) payload[i] = (i * 7) & 0xff;
    const file = join(base, 'http.iso');
    await writeFile(file, payload);
    server = createServer((req, res) => {
      requests.push({ range: req.headers.range });
      if (req.url === '/missing.iso') {
        res.writeHead(404).end();
        return;
      }
      if (req.url === '/broken.iso') {
        res.writeHead(500, 'Broken').end();
        return;
      }
      const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
      if (m && !ignoreRange) {
        const start = Number(m[1]);
        if (start >= payload.length) {
          res.writeHead(416).end();
          return;
        }
        res.writeHead(206, { 'Content-Length': String(payload.length - start) });
        createReadStream(file, { start }).pipe(res);
        return;
      }
      res.writeHead(200, { 'Content-Length': String(payload.length) });
      createReadStream(file).pipe(res);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const addr = server.address() as { port: number };
    url = `http://127.0.0.1:${addr.port}`;
  });

  afterAll(async () => {
    await new Promise((r) => server.close(r));
  });

  beforeEach(() => {
    requests = [];
    ignoreRange = false;
  });

  it('resumes an interrupted download with a Range request', async () => {
    const dest = join(base, 'dl', 'resume.iso');
    await mkdir(join(base, 'dl'), { recursive: true });
    await writeFile(`${dest}.part`, payload.subarray(0, 300_000));
    const r = await downloadFile(`${url}/file.iso`, dest);
    expect(r).toEqual({ fetched: payload.length - 300_000, resumedFrom: 300_000 });
    expect(requests[0]?.range).toBe('bytes=300000-');
    expect((await readFile(dest)).equals(payload)).toBe(true);
    await expect(stat(`${dest}.part`)).rejects.toThrow();
  });

  it('starts over when the server ignores Range', async () => {
    ignoreRange = true;
    const dest = join(base, 'dl', 'norange.iso');
    await writeFile(`${dest}.part`, Buffer.from('stale partial data'));
    const r = await downloadFile(`${url}/file.iso`, dest);
    expect(r.resumedFrom).toBe(0);
    expect((await readFile(dest)).equals(payload)).toBe(true);
  });

  it('starts over when the partial file is already too long (416)', async () => {
    const dest = join(base, 'dl', 'toolong.iso');
    await writeFile(`${dest}.part`, Buffer.alloc(payload.length + 10));
    await downloadFile(`${url}/file.iso`, dest);
    expect((await readFile(dest)).equals(payload)).toBe(true);
  });

  it('resumes file:// downloads too', async () => {
    const dest = join(base, 'dl', 'file-resume.iso');
    const src = join(base, 'http.iso');
    await writeFile(`${dest}.part`, payload.subarray(0, 1000));
    const r = await downloadFile(`file://${src}`, dest);
    expect(r.resumedFrom).toBe(1000);
    expect((await readFile(dest)).equals(payload)).toBe(true);
    await truncate(dest, 0);
  });

  it('reports 404 as not found and other failures with the status', async () => {
    await expect(fetchText(`${url}/missing.iso`)).rejects.toBeInstanceOf(NotFoundError);
    await expect(downloadFile(`${url}/broken.iso`, join(base, 'dl', 'b.iso'))).rejects.toThrow(
      /cannot download http:\/\/127\.0\.0\.1:\d+\/broken\.iso: HTTP 500 Broken/,
    );
    await expect(fetchText('ftp://example.invalid/x')).rejects.toThrow(/unsupported URL ftp:/);
  });

  it('verifies an ISO served over HTTP', async () => {
    // sign the HTTP payload with the trusted key and serve the sidecars from a second server
    const iso = join(base, 'http.iso');
    const sig = await openpgp
      .createMessage({ binary: new Uint8Array(payload) })
      .then((message) => openpgp.sign({ message, signingKeys: key.privateKey, detached: true }));
    const side: Record<string, string> = {
      '/v/alpine-virt-9.9.9-x86_64.iso.sha256': `${await sha(iso, 'sha256')}  alpine-virt-9.9.9-x86_64.iso\n`,
      '/v/alpine-virt-9.9.9-x86_64.iso.asc': sig as string,
    };
    const s2 = createServer((req, res) => {
      if (req.url && side[req.url] !== undefined) res.writeHead(200).end(side[req.url]);
      else if (req.url === '/v/alpine-virt-9.9.9-x86_64.iso') createReadStream(iso).pipe(res.writeHead(200));
      else res.writeHead(404).end();
    });
    await new Promise<void>((r) => s2.listen(0, '127.0.0.1', r));
    try {
      const port = (s2.address() as { port: number }).port;
      const r = await fetchVerifiedIso(`http://127.0.0.1:${port}/v/alpine-virt-9.9.9-x86_64.iso`, {
        cacheDir: join(base, 'http-cache'),
        trusted,
        log: memoryLog().log,
      });
      expect(r.sha256).toBe(await sha(iso, 'sha256'));
      expect(r.signedBy).toBe(key.fingerprint);
    } finally {
      await new Promise((r) => s2.close(r));
    }
  });
});
