// Conversion, compression and checksums of the local build, on small images made here with qemu-img.
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type ConvertTarget,
  checkOutputSettings,
  compressImage,
  convertImage,
  convertOptions,
  finishImage,
  roundUpGiB,
  writeChecksum,
} from '../../src/local/convert.js';
import { sha } from '../fixtures/local/mirror.js';

function has(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const hasQemuImg = has('qemu-img');
if (!hasQemuImg)
  console.warn('skipping conversion tests: qemu-img is not installed (apt-get install qemu-utils)');

const MiB = 1024 * 1024;
let dir: string;
let source: string;

function info(path: string, format?: string): { 'virtual-size': number; format: string } {
  const args = ['info', '--output=json', ...(format ? ['-f', format] : []), path];
  return JSON.parse(execFileSync('qemu-img', args, { encoding: 'utf8' }));
}

function target(over: Partial<ConvertTarget>): ConvertTarget {
  const format = over.format ?? 'qcow2';
  const imagePath = join(dir, `img.${format}`);
  return {
    configKey: 'test-key',
    source,
    format,
    imagePath,
    uploadPath: over.compress ? `${imagePath}.${over.compress}` : imagePath,
    ...over,
  };
}

const run = async (cmd: string, args: readonly string[]) => {
  execFileSync(cmd, [...args], { stdio: 'ignore' });
};

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'build-convert-'));
  if (!hasQemuImg) return;
  // a 100 MiB qcow2 with some recognisable data at the start and in the middle
  const raw = join(dir, 'seed.raw');
  const data = Buffer.alloc(100 * MiB);
  data.write('BOOTSECTOR', 0);
  data.fill(0xab, 50 * MiB, 51 * MiB);
  await writeFile(raw, data);
  source = join(dir, 'image.qcow2');
  execFileSync('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, source]);
  await rm(raw);
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe.skipIf(!hasQemuImg)('convertImage', () => {
  it('qcow2 is a hard link to the Packer output', async () => {
    const t = target({ format: 'qcow2' });
    await convertImage(t, run);
    const [a, b] = await Promise.all([stat(source), stat(t.imagePath)]);
    expect(b.ino).toBe(a.ino);
    expect(a.nlink).toBeGreaterThanOrEqual(2);
    // converting again replaces the link
    await convertImage(t, run);
    expect((await stat(t.imagePath)).ino).toBe(a.ino);
    await rm(t.imagePath);
  });

  it('vhd with force_size keeps the exact virtual size', async () => {
    const t = target({ format: 'vhd', formatOpts: 'vhd/force-size', imagePath: join(dir, 'dyn.vhd') });
    await convertImage(t, run);
    const i = info(t.imagePath, 'vpc');
    expect(i.format).toBe('vpc');
    expect(i['virtual-size']).toBe(100 * MiB);
    // dynamic: smaller than the virtual size
    expect((await stat(t.imagePath)).size).toBeLessThan(100 * MiB);
  });

  it('vhd without options is rounded to a CHS geometry', async () => {
    const t = target({ format: 'vhd', imagePath: join(dir, 'chs.vhd') });
    await convertImage(t, run);
    expect(info(t.imagePath, 'vpc')['virtual-size']).toBeGreaterThanOrEqual(100 * MiB);
  });

  it('fixed vhd: the raw disk plus a 512-byte footer', async () => {
    const t = target({
      format: 'vhd',
      formatOpts: 'vhd/fixed_force-size',
      imagePath: join(dir, 'fixed.vhd'),
    });
    await convertImage(t, run);
    expect((await stat(t.imagePath)).size).toBe(100 * MiB + 512);
    const head = Buffer.alloc(10);
    const fh = await import('node:fs/promises').then((m) => m.open(t.imagePath, 'r'));
    await fh.read(head, 0, 10, 0);
    const footer = Buffer.alloc(8);
    await fh.read(footer, 0, 8, 100 * MiB);
    await fh.close();
    expect(head.toString()).toBe('BOOTSECTOR');
    expect(footer.toString()).toBe('conectix');
  });

  it('raw', async () => {
    const t = target({ format: 'raw' });
    await convertImage(t, run);
    const buf = await readFile(t.imagePath);
    expect(buf.length).toBe(100 * MiB);
    expect(buf.subarray(0, 10).toString()).toBe('BOOTSECTOR');
    expect(buf[50 * MiB]).toBe(0xab);
  });

  it('raw.tar.gz: disk.raw in whole GiB, as GCP imports it', async () => {
    const t = target({ format: 'raw.tar.gz' });
    await convertImage(t, run);
    const listing = execFileSync('tar', ['-tvzf', t.imagePath], { encoding: 'utf8' }).trim().split('\n');
    expect(listing).toHaveLength(1);
    expect(listing[0]).toMatch(/\s1073741824\s.*disk\.raw$/);
    expect(roundUpGiB(1)).toBe(1024 ** 3);
    expect(roundUpGiB(1024 ** 3 + 1)).toBe(2 * 1024 ** 3);
  });

  it('a failed conversion leaves no file under the final name', async () => {
    const t = target({ format: 'vhd', source: join(dir, 'missing.qcow2'), imagePath: join(dir, 'nope.vhd') });
    await expect(convertImage(t, run)).rejects.toThrow();
    await expect(stat(t.imagePath)).rejects.toThrow();
  });
});

describe.skipIf(!hasQemuImg)('compressImage and checksums', () => {
  const tools: Record<string, string[]> = {
    gz: ['gzip', '-dc'],
    bz2: ['bzip2', '-dc'],
    xz: ['xz', '-dc'],
    zstd: ['zstd', '-dcq'],
  };
  for (const [c, [cmd, ...args]] of Object.entries(tools)) {
    it.skipIf(!has(cmd!))(`${c}: decompresses to the converted image`, async () => {
      const t = target({ format: 'raw', compress: c });
      const { sha512, bytes } = await finishImage(t, run);
      expect(bytes).toBeLessThan((100 * MiB) / 10);
      const out = execFileSync(cmd!, [...args, t.uploadPath], { maxBuffer: 200 * MiB });
      expect(out.equals(await readFile(t.imagePath))).toBe(true);
      const sum = await readFile(`${t.uploadPath}.sha512`, 'utf8');
      expect(sum).toBe(`${sha512}  img.raw.${c}\n`);
      expect(sha512).toBe(await sha(t.uploadPath, 'sha512'));
      // sha512sum -c accepts it
      execFileSync('sha512sum', ['-c', `${t.uploadPath}.sha512`], { cwd: dir, stdio: 'ignore' });
    });
  }

  it('tar.gz (GCP): a disk.raw archive next to the raw image', async () => {
    const t = target({ format: 'raw', compress: 'tar.gz', uploadPath: join(dir, 'gcp.tar.gz') });
    await convertImage(t, run);
    await compressImage(t, run);
    const listing = execFileSync('tar', ['-tzf', t.uploadPath], { encoding: 'utf8' }).trim();
    expect(listing).toBe('disk.raw');
    const digest = await writeChecksum(t.uploadPath);
    expect(digest).toMatch(/^[0-9a-f]{128}$/);
  });

  it('no compression: the upload is the converted image', async () => {
    const t = target({ format: 'qcow2' });
    const r = await finishImage(t, run);
    expect(t.uploadPath).toBe(t.imagePath);
    expect(await readFile(`${t.imagePath}.sha512`, 'utf8')).toContain(r.sha512);
  });
});

describe('output settings', () => {
  it('accepts the known formats, presets and compressors', () => {
    for (const f of ['qcow2', 'vhd', 'raw', 'raw.tar.gz', 'vmdk', 'vhdx']) {
      expect(() => checkOutputSettings({ configKey: 'k', format: f })).not.toThrow();
    }
    for (const c of ['gz', 'bz2', 'xz', 'zstd', 'tar.gz']) {
      expect(() => checkOutputSettings({ configKey: 'k', format: 'raw', compress: c })).not.toThrow();
    }
    expect(convertOptions('vhd', 'vhd/fixed_force-size', 'k')).toBe('subformat=fixed,force_size=on');
    expect(convertOptions('vhd', 'vhd/force-size', 'k')).toBe('force_size=on');
    expect(convertOptions('vhd', 'subformat=fixed', 'k')).toBe('subformat=fixed');
    expect(convertOptions('vhd', null, 'k')).toBeUndefined();
  });

  it('rejects bad settings with messages naming the variant and key', () => {
    expect(() => checkOutputSettings({ configKey: 'k1', format: 'iso' })).toThrow(/k1: image_format "iso"/);
    expect(() => checkOutputSettings({ configKey: 'k2', format: 'raw', compress: 'rar' })).toThrow(
      /k2: image_compress "rar"/,
    );
    expect(() =>
      checkOutputSettings({ configKey: 'k3', format: 'qcow2', formatOpts: 'vhd/force-size' }),
    ).toThrow(/k3: image_format_opts/);
    expect(() => checkOutputSettings({ configKey: 'k4', format: 'raw.tar.gz', compress: 'gz' })).toThrow(
      /already compressed/,
    );
    expect(() => convertOptions('vmdk', 'vhd/force-size', 'k5')).toThrow(/for vhd images, not vmdk/);
    expect(() => convertOptions('vhd', 'force size; rm -rf /', 'k6')).toThrow(/neither a preset/);
  });
});
