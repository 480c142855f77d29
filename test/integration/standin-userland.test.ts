// The aarch64 userland of the stand-in repository (test/helpers/alpine-standin-userland.ts), without QEMU:
// Alpine's real noarch packages sit in the test-signed aarch64 index byte for byte, still signed by Alpine
// (never re-signed), and tied to the index by their control checksum; the Debian-built stand-ins are signed by
// the stand-in key; the yx stand-in reads a NoCloud meta-data file as tiny-cloud asks it to.
// (The boot of an image made from it: bench/boot-test.ts --only aarch64.)
import { execFile } from 'node:child_process';
import { createHash, createPublicKey, verify } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  gzipMembers,
  indexEntry,
  loadApkKeys,
  tarEntries,
  verifyApk,
  verifyApkIndex,
} from '../../src/local/apk.js';
import { alpineMirror, ensureStandinRepo, type StandinRepo } from '../helpers/alpine-standin.js';
import { REAL_NOARCH } from '../helpers/alpine-standin-userland.js';

const run = promisify(execFile);
const mirror = alpineMirror();
const noApt =
  existsSync('/usr/bin/apt-get') && existsSync('/usr/bin/dpkg-deb')
    ? undefined
    : 'needs apt-get and dpkg-deb';
const skip = mirror.reason ?? noApt;
if (skip) console.warn(`skipping the aarch64 stand-in userland test: ${skip}`);

const ALPINE_KEYS = join(import.meta.dirname, '..', '..', 'keys', 'apk');

/** The signer's key name and whether the signature over the control stream verifies with `pem`. */
function signature(apk: Buffer): { keyName: string; verifies: (pem: string) => boolean } {
  const members = gzipMembers(apk, 'apk');
  const sig = tarEntries(gunzipSync(members[0]!)).find((e) => e.name.startsWith('.SIGN.RSA'))!;
  return {
    keyName: sig.name.replace(/^\.SIGN\.RSA\./, ''),
    verifies: (pem) => verify('sha1', members[1]!, createPublicKey(pem), sig.data),
  };
}

describe.skipIf(skip)('aarch64 userland of the stand-in repository', () => {
  let repo: StandinRepo;
  let index: string;
  let base: string;
  beforeAll(async () => {
    repo = await ensureStandinRepo('aarch64');
    base = await mkdtemp(join(tmpdir(), 'standin-userland-'));
    const keys = await loadApkKeys([join(repo.dir)]);
    index = verifyApkIndex(await readFile(join(repo.dir, 'aarch64', 'APKINDEX.tar.gz')), keys, 'stand-in');
  }, 600_000);
  afterAll(async () => {
    if (base) await rm(base, { recursive: true, force: true });
  });

  it("holds Alpine's noarch packages unmodified, with Alpine's signature, tied to the test-signed index", async () => {
    const alpine = await loadApkKeys([ALPINE_KEYS]);
    // the index is the stand-in key's: Alpine's keys alone do not trust it
    expect(() =>
      verifyApkIndex(readFileSync(join(repo.dir, 'aarch64', 'APKINDEX.tar.gz')), alpine, 'stand-in'),
    ).toThrow(/not a trusted repository key/);
    for (const name of REAL_NOARCH) {
      const entry = indexEntry(index, name);
      expect(entry, name).toBeDefined();
      const file = `${name}-${entry!.version}.apk`;
      const ours = await readFile(join(repo.dir, 'aarch64', file));
      const real = await readFile(join(mirror.dir!, 'v3.19', 'main', 'x86_64', file));
      expect(createHash('sha256').update(ours).digest('hex'), file).toBe(
        createHash('sha256').update(real).digest('hex'),
      );
      const sig = signature(ours);
      const pem = alpine.keys.get(sig.keyName);
      expect(pem, `${file} is signed by ${sig.keyName}`).toBeDefined();
      expect(sig.verifies(pem!), file).toBe(true);
      verifyApk(ours, entry!, file);
    }
  });

  it('signs every stand-in with the stand-in key', async () => {
    const pem = await readFile(repo.publicKeyPath, 'utf8');
    const standins = repo.packages.filter((f) => !REAL_NOARCH.includes(f.replace(/-\d.*$/, '')));
    expect(standins.map((f) => f.replace(/-\d.*$/, ''))).toEqual(
      expect.arrayContaining(['openrc', 'openssh-server', 'yx', 'cib-glibc-standin', 'ifupdown-ng']),
    );
    for (const f of standins) {
      const buf = await readFile(join(repo.dir, 'aarch64', f));
      const sig = signature(buf);
      expect(sig.keyName, f).toBe(repo.keyName);
      expect(sig.verifies(pem), f).toBe(true);
      verifyApk(buf, indexEntry(index, f.replace(/-\d.*$/, ''))!, f);
    }
  });

  it('yx stand-in: the scalars and map keys tiny-cloud reads from NoCloud meta-data', async () => {
    const entry = indexEntry(index, 'yx')!;
    const files = verifyApk(
      await readFile(join(repo.dir, 'aarch64', `yx-${entry.version}.apk`)),
      entry,
      'yx',
    );
    const yx = join(base, 'yx');
    await writeFile(yx, files.find((e) => e.name === 'usr/bin/yx')!.data, { mode: 0o755 });
    const meta = join(base, 'meta-data');
    // the layout src/boottest/seed.ts writes (yaml's stringify)
    await writeFile(
      meta,
      [
        'instance-id: i-boot-test',
        'hostname: boot-test-1a2b',
        'local-hostname: "boot-test-1a2b"',
        'public-keys:',
        '  boot-test:',
        '    openssh-key: ssh-ed25519 AAAAC3Nza test@host',
        '',
      ].join('\n'),
    );
    const q = async (...keys: string[]) => (await run('sh', [yx, '-f', meta, ...keys])).stdout;
    expect(await q('hostname')).toBe('boot-test-1a2b\n');
    expect(await q('local-hostname')).toBe('boot-test-1a2b\n');
    expect(await q('public-keys')).toBe('boot-test\n');
    expect(await q('public-keys', 'boot-test')).toBe('openssh-key\n');
    expect(await q('public-keys', 'boot-test', 'openssh-key')).toBe('ssh-ed25519 AAAAC3Nza test@host\n');
    expect(await q()).toBe('instance-id\nhostname\nlocal-hostname\npublic-keys\n');
    await expect(q('nothing')).rejects.toThrow();
  });
});
