// Packer version detection and the version-dependent template assembly; the template validated by the real
// Packer installed here (Debian 12: 1.6.6).
import { execFileSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { prepareBuilderBoot } from '../../src/local/direct-boot.js';
import {
  assembleTemplateDir,
  detectPacker,
  type PackerInfo,
  packerBuildArgs,
  packerEnv,
  packerFeatures,
  parsePackerVersion,
  templateFiles,
} from '../../src/local/packer.js';
import { packerVariant } from '../../src/local/variant.js';
import { Image } from '../../src/state/image.js';
import { REPO_ROOT, sha } from '../fixtures/local/mirror.js';
import { sampleConfig } from '../fixtures/local/sample.js';

function packerVersion(): string | undefined {
  try {
    return execFileSync('packer', ['version'], {
      encoding: 'utf8',
      env: { ...process.env, CHECKPOINT_DISABLE: '1' },
    });
  } catch {
    return undefined;
  }
}
const installed = packerVersion();
if (!installed) console.warn('skipping real Packer checks: packer is not installed (apt-get install packer)');

describe('Packer version detection', () => {
  it('parses the outputs of old and current Packer', () => {
    expect(parsePackerVersion('Packer v1.6.6\n')).toMatchObject({
      major: 1,
      minor: 6,
      patch: 6,
      text: '1.6.6',
    });
    expect(parsePackerVersion('1.11.2')).toMatchObject({ major: 1, minor: 11, patch: 2 });
    expect(
      parsePackerVersion(
        'Packer v1.9.4\n\nYour version of Packer is out of date! The latest version\nis 1.11.2.',
      ),
    ).toMatchObject({ text: '1.9.4' });
    expect(() => parsePackerVersion('command not found')).toThrow(/cannot read the Packer version/);
  });

  it('decides the differences in one place', () => {
    expect(packerFeatures(parsePackerVersion('1.6.6'))).toEqual({ init: false, bundledQemu: true });
    expect(packerFeatures(parsePackerVersion('1.7.0'))).toEqual({ init: true, bundledQemu: true });
    expect(packerFeatures(parsePackerVersion('1.9.4'))).toEqual({ init: true, bundledQemu: true });
    expect(packerFeatures(parsePackerVersion('1.11.2'))).toEqual({ init: true, bundledQemu: false });
    expect(packerFeatures(parsePackerVersion('2.0.0'))).toEqual({ init: true, bundledQemu: false });
    expect(() => packerFeatures(parsePackerVersion('1.5.6'))).toThrow(/at least 1\.6\.6/);
  });

  it('plugins.pkr.hcl only for Packer that understands required_plugins', () => {
    const names = ['alpine.pkr.hcl', 'plugins.pkr.hcl', 'README.md'];
    expect(templateFiles(names, { init: false, bundledQemu: true })).toEqual(['alpine.pkr.hcl']);
    expect(templateFiles(names, { init: true, bundledQemu: false })).toEqual([
      'alpine.pkr.hcl',
      'plugins.pkr.hcl',
    ]);
  });

  it('build arguments: var files in order, colour off on request', () => {
    const info: PackerInfo = {
      bin: 'packer',
      version: parsePackerVersion('1.6.6'),
      features: packerFeatures(parsePackerVersion('1.6.6')),
    };
    expect(
      packerBuildArgs({ info, dir: '/d', varFiles: ['/d/build.pkrvars.hcl', '/u/mine.hcl'], color: false }),
    ).toEqual([
      'build',
      '-timestamp-ui',
      '-color=false',
      '-var-file=/d/build.pkrvars.hcl',
      '-var-file=/u/mine.hcl',
      '.',
    ]);
    expect(packerBuildArgs({ info, dir: '/d', varFiles: [], color: true })).not.toContain('-color=false');
    const env = packerEnv('/w');
    expect(env).toMatchObject({
      PACKER_CACHE_DIR: '/w/packer_cache',
      PACKER_PLUGIN_PATH: '/w/packer_plugin',
      CHECKPOINT_DISABLE: '1',
    });
  });
});

describe.skipIf(!installed)('the template with the installed Packer', () => {
  let dir: string;
  let info: PackerInfo;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'build-packer-'));
    info = await detectPacker();
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('detects the installed version', () => {
    expect(info.version.text).toBe(parsePackerVersion(installed!).text);
  });

  it('assembles a build directory this Packer accepts, and validates it', async () => {
    const buildDir = join(dir, 'build');
    const files = await assembleTemplateDir(join(REPO_ROOT, 'packer'), buildDir, info);
    expect(files).toContain('alpine.pkr.hcl');
    expect(files.includes('plugins.pkr.hcl')).toBe(info.features.init);
    expect((await readdir(buildDir)).sort()).toEqual(files);

    // a variant whose scripts and ISO exist, so `packer validate` checks everything
    const scripts = join(dir, 'scripts');
    await import('node:fs/promises').then(async (fs) => {
      await fs.mkdir(join(scripts, 'setup.d'), { recursive: true });
      for (const s of ['setup', 'setup-tiny', 'cleanup']) await fs.writeFile(join(scripts, s), '#!/bin/sh\n');
    });
    const iso = join(dir, 'builder.iso');
    await writeFile(iso, 'not really an ISO');
    const variant = packerVariant({
      image: new Image(sampleConfig(), dir),
      scriptsDir: scripts,
      isoPath: iso,
      isoChecksum: `sha256:${await sha(iso, 'sha256')}`,
      outputDir: join(dir, 'out'),
      accelerator: 'tcg',
      cpus: 2,
      firmware: '/usr/share/ovmf/OVMF.fd',
      serialLog: join(dir, 'serial.log'),
      debug: false,
      boot: await prepareBuilderBoot(
        buildDir,
        { kernel: join(dir, 'vmlinuz'), initrd: join(dir, 'initramfs') },
        'x86_64',
      ),
    });
    const variantFile = join(buildDir, 'variant.json');
    await writeFile(variantFile, JSON.stringify(variant));
    const vars = join(buildDir, 'build.pkrvars.hcl');
    await writeFile(vars, `variant_file = ${JSON.stringify(variantFile)}\n`);
    const user = join(dir, 'user.pkrvars.hcl');
    await writeFile(
      user,
      // boot_wait/cmd_wait: unused since the direct kernel boot, still accepted from old --vars files
      'memory = 2048\ncmd_wait = "2s"\nboot_wait = { x86_64 = "10s", aarch64 = "20s" }\n',
    );
    const out = execFileSync('packer', ['validate', `-var-file=${vars}`, `-var-file=${user}`, '.'], {
      cwd: buildDir,
      encoding: 'utf8',
      env: { ...process.env, CHECKPOINT_DISABLE: '1' },
    });
    expect(out).not.toMatch(/warning|error/i);
  });

  it('is formatted as `packer fmt` wants', () => {
    const out = execFileSync('packer', ['fmt', '-check', '.'], {
      cwd: join(REPO_ROOT, 'packer'),
      encoding: 'utf8',
    });
    expect(out.trim()).toBe('');
  });

  it('keeps 1.6.6-incompatible constructs out of alpine.pkr.hcl', async () => {
    const text = (await readFile(join(REPO_ROOT, 'packer', 'alpine.pkr.hcl'), 'utf8'))
      .split('\n')
      .filter((l) => !l.trim().startsWith('#'))
      .join('\n');
    expect(text).not.toMatch(/required_plugins|templatefile\(|^\s*data\s+"|^\s*firmware\s*=/m);
  });
});
