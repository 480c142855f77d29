// UEFI firmware for the builder VMs: from the host, or extracted from Alpine's community repository (a local
// file:// mirror with an APKINDEX and an APK made and signed here, checked as apk checks them), padded to 64 MiB.
import { execFileSync } from 'node:child_process';
import { createHash, generateKeyPairSync, sign } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ApkKeys, gzipMembers, loadApkKeys, tarEntries } from '../../src/local/apk.js';
import {
  apkVersion,
  ensureUefiFirmware,
  firmwarePath,
  HOST_FIRMWARE,
  PAD_SIZE,
} from '../../src/local/firmware.js';
import { memoryLog, REPO_ROOT } from '../fixtures/local/mirror.js';

let base: string;

beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), 'build-firmware-'));
  const keyDir = join(base, 'keys', 'apk');
  await mkdir(keyDir, { recursive: true });
  await writeFile(join(keyDir, KEY_NAME), repoKey.publicKey.export({ type: 'spki', format: 'pem' }));
  apkKeys = await loadApkKeys([keyDir, join(base, 'missing')]);
});
afterAll(async () => {
  await rm(base, { recursive: true, force: true });
});

const repoKey = generateKeyPairSync('rsa', { modulusLength: 2048 });
const KEY_NAME = 'test-repo@example.invalid-1234abcd.rsa.pub';

/** An uncompressed tar stream of the given files (GNU tar, run on a staging directory). */
async function tarOf(files: Record<string, Buffer | string>): Promise<Buffer> {
  const dir = await mkdtemp(join(base, 'tar-'));
  for (const [name, data] of Object.entries(files)) {
    await mkdir(dirname(join(dir, name)), { recursive: true });
    await writeFile(join(dir, name), data);
  }
  return execFileSync('tar', ['--format=ustar', '-cf', '-', '-C', dir, ...Object.keys(files)], {
    maxBuffer: 64 * 1024 * 1024,
  });
}

function signTar(data: Buffer, alg: 'sha1' | 'sha256'): Promise<Buffer> {
  const sig = sign(alg, data, repoKey.privateKey);
  return tarOf({ [`.SIGN.${alg === 'sha1' ? 'RSA' : 'RSA256'}.${KEY_NAME}`]: sig });
}

interface RepoOpts {
  /** corrupt the firmware after the package was checksummed */
  tamperData?: boolean;
  /** the index names a different control checksum */
  wrongChecksum?: boolean;
  /** the index signature is over other data */
  badIndexSignature?: boolean;
  alg?: 'sha1' | 'sha256';
}

/** A signed Alpine-like community repository for `arch` with one firmware package. */
async function alpineMirror(
  arch: string,
  pkg: string,
  file: string,
  content: Buffer,
  o: RepoOpts = {},
): Promise<string> {
  const cdn = join(base, `cdn-${arch}-${Math.random().toString(36).slice(2)}`);
  const repo = join(cdn, 'v3.24', 'community', arch);
  await mkdir(repo, { recursive: true });
  const version = '2025.02-r1';
  // the package: [signature][control with .PKGINFO/datahash][data]
  const dataGz = gzipSync(await tarOf({ [file]: content }));
  const pkginfo = `pkgname = ${pkg}\npkgver = ${version}\narch = ${arch}\ndatahash = ${createHash('sha256').update(dataGz).digest('hex')}\n`;
  const controlGz = gzipSync(await tarOf({ '.PKGINFO': pkginfo }));
  const finalData = o.tamperData ? gzipSync(await tarOf({ [file]: Buffer.from('evil firmware') })) : dataGz;
  const apkSig = gzipSync(await signTar(controlGz, 'sha1'));
  await writeFile(join(repo, `${pkg}-${version}.apk`), Buffer.concat([apkSig, controlGz, finalData]));
  const checksum = `Q1${createHash('sha1')
    .update(o.wrongChecksum ? Buffer.from('x') : controlGz)
    .digest('base64')}`;
  const index = [
    'C:Q1abc=\nP:other\nV:1.0-r0\nA:x86_64\n',
    `C:${checksum}\nP:${pkg}\nV:${version}\nA:${arch}\nT:UEFI firmware\n`,
  ].join('\n');
  const indexGz = gzipSync(await tarOf({ DESCRIPTION: 'v3.24 community', APKINDEX: index }));
  const sigGz = gzipSync(
    await signTar(o.badIndexSignature ? Buffer.from('other') : indexGz, o.alg ?? 'sha1'),
  );
  await writeFile(join(repo, 'APKINDEX.tar.gz'), Buffer.concat([sigGz, indexGz]));
  return `file://${cdn}`;
}

let apkKeys: ApkKeys;

describe('ensureUefiFirmware', () => {
  it('copies the host firmware into work/firmware', async () => {
    const host = join(base, 'host-OVMF.fd');
    await writeFile(host, Buffer.alloc(2 * 1024 * 1024, 1));
    const work = join(base, 'w1');
    const mem = memoryLog();
    const p = await ensureUefiFirmware('x86_64', {
      workDir: work,
      cdnUrl: 'file:///nonexistent',
      vVersion: 'v3.24',
      pad: false,
      log: mem.log,
      hostCandidates: ['/nonexistent/OVMF.fd', host],
    });
    expect(p).toBe(firmwarePath(work, 'x86_64'));
    expect((await readFile(p)).equals(await readFile(host))).toBe(true);
    expect(mem.text()).toContain(`UEFI firmware for x86_64: host file ${host}`);
    // kept on the next run
    await writeFile(host, 'changed');
    await ensureUefiFirmware('x86_64', {
      workDir: work,
      cdnUrl: '',
      vVersion: 'v3.24',
      pad: false,
      log: mem.log,
      hostCandidates: [host],
    });
    expect((await stat(p)).size).toBe(2 * 1024 * 1024);
  });

  it("extracts it from Alpine's package when the host has none, and pads aarch64 to 64 MiB", async () => {
    const content = Buffer.alloc(3 * 1024 * 1024, 0x5a);
    const cdnUrl = await alpineMirror('aarch64', 'aavmf', 'usr/share/AAVMF/QEMU_EFI.fd', content);
    const work = join(base, 'w2');
    const mem = memoryLog();
    const p = await ensureUefiFirmware('aarch64', {
      workDir: work,
      cdnUrl,
      vVersion: 'v3.24',
      pad: true,
      log: mem.log,
      hostCandidates: [],
      apkKeys,
    });
    const data = await readFile(p);
    expect(data.length).toBe(PAD_SIZE);
    expect(data.subarray(0, content.length).equals(content)).toBe(true);
    expect(data.subarray(content.length).every((b) => b === 0)).toBe(true);
    expect(mem.text()).toMatch(
      /extracted from file:\/\/.*\/v3\.24\/community\/aarch64\/aavmf-2025\.02-r1\.apk/,
    );
    expect(mem.text()).toContain('padded aarch64 UEFI firmware to 64 MiB');
  });

  it('names the repository when the package is not there', async () => {
    const cdnUrl = await alpineMirror('x86_64', 'not-ovmf', 'usr/share/OVMF/OVMF.fd', Buffer.from('x'));
    await expect(extract('x86_64', cdnUrl, 'w3')).rejects.toThrow(
      /community\/x86_64\/APKINDEX\.tar\.gz has no ovmf package/,
    );
  });

  const extract = (arch: string, cdnUrl: string, w: string, keys: ApkKeys = apkKeys) =>
    ensureUefiFirmware(arch, {
      workDir: join(base, w),
      cdnUrl,
      vVersion: 'v3.24',
      pad: false,
      log: memoryLog().log,
      hostCandidates: [],
      apkKeys: keys,
    });
  const OVMF = 'usr/share/OVMF/OVMF.fd';

  it('accepts an index signed with SHA-256 (.SIGN.RSA256)', async () => {
    const cdnUrl = await alpineMirror('x86_64', 'ovmf', OVMF, Buffer.from('good firmware'), {
      alg: 'sha256',
    });
    const p = await extract('x86_64', cdnUrl, 'w5');
    expect(await readFile(p, 'utf8')).toBe('good firmware');
  });

  it('refuses an index signed by an unknown key, or with a bad signature', async () => {
    const cdnUrl = await alpineMirror('x86_64', 'ovmf', OVMF, Buffer.from('fw'));
    await expect(extract('x86_64', cdnUrl, 'w6', { keys: new Map(), dirs: ['/k/apk'] })).rejects.toThrow(
      /APKINDEX\.tar\.gz is signed by test-repo@example\.invalid-1234abcd\.rsa\.pub, which is not a trusted repository key \(\/k\/apk\)/,
    );
    const bad = await alpineMirror('x86_64', 'ovmf', OVMF, Buffer.from('fw'), { badIndexSignature: true });
    await expect(extract('x86_64', bad, 'w7')).rejects.toThrow(
      /APKINDEX\.tar\.gz: bad signature by test-repo/,
    );
    // nothing is left behind under the final name
    expect(existsSync(firmwarePath(join(base, 'w7'), 'x86_64'))).toBe(false);
  });

  it('refuses a package whose control or data stream does not match', async () => {
    const wrong = await alpineMirror('x86_64', 'ovmf', OVMF, Buffer.from('fw'), { wrongChecksum: true });
    await expect(extract('x86_64', wrong, 'w8')).rejects.toThrow(
      /ovmf-2025\.02-r1\.apk: control checksum mismatch/,
    );
    const tampered = await alpineMirror('x86_64', 'ovmf', OVMF, Buffer.from('fw'), { tamperData: true });
    await expect(extract('x86_64', tampered, 'w9')).rejects.toThrow(
      /ovmf-2025\.02-r1\.apk: data checksum mismatch/,
    );
  });

  it('refuses firmware larger than the padding size', async () => {
    const work = join(base, 'w4');
    await mkdir(join(work, 'firmware'), { recursive: true });
    await writeFile(firmwarePath(work, 'aarch64'), Buffer.alloc(PAD_SIZE + 1));
    await expect(
      ensureUefiFirmware('aarch64', {
        workDir: work,
        cdnUrl: '',
        vVersion: 'v3.24',
        pad: true,
        log: memoryLog().log,
      }),
    ).rejects.toThrow(/larger than the 64 MiB/);
  });

  it('knows the Debian and Alpine firmware paths', () => {
    expect(HOST_FIRMWARE.x86_64).toContain('/usr/share/ovmf/OVMF.fd');
    expect(HOST_FIRMWARE.x86_64).toContain('/usr/share/OVMF/OVMF.fd');
    expect(HOST_FIRMWARE.aarch64).toContain('/usr/share/qemu-efi-aarch64/QEMU_EFI.fd');
    expect(HOST_FIRMWARE.aarch64).toContain('/usr/share/AAVMF/QEMU_EFI.fd');
  });

  it('splits gzip members and reads tar entries', () => {
    const two = Buffer.concat([gzipSync(Buffer.from('one')), gzipSync(Buffer.from('two'))]);
    expect(gzipMembers(two)).toHaveLength(2);
    expect(() => gzipMembers(Buffer.from('not gzip'), 'x.apk')).toThrow(
      /x\.apk: not a gzip stream at byte 0/,
    );
    expect(tarEntries(Buffer.alloc(1024))).toEqual([]);
  });

  it("ships Alpine's repository keys for x86_64 and aarch64", async () => {
    const k = await loadApkKeys([join(REPO_ROOT, 'keys', 'apk')]);
    expect([...k.keys.keys()]).toEqual(
      expect.arrayContaining([
        'alpine-devel@lists.alpinelinux.org-6165ee59.rsa.pub',
        'alpine-devel@lists.alpinelinux.org-616ae350.rsa.pub',
      ]),
    );
  });

  it('reads package versions from an APKINDEX', () => {
    const idx = 'P:a\nV:1-r0\n\nP:ovmf\nV:0.0.202502-r0\nA:x86_64\n\n';
    expect(apkVersion(idx, 'ovmf')).toBe('0.0.202502-r0');
    expect(apkVersion(idx, 'aavmf')).toBeUndefined();
  });
});
