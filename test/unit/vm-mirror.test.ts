import { lstat, mkdtemp, readlink, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { packerVariant } from '../../src/local/variant.js';
import { vmBuildCdn } from '../../src/local/vm-mirror.js';
import { Image } from '../../src/state/image.js';
import { sampleConfig } from '../fixtures/local/sample.js';

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

describe('vmBuildCdn: the mirror the VM builder installs from', () => {
  it("is nothing for Alpine's CDN itself", async () => {
    expect(await vmBuildCdn('https://dl-cdn.alpinelinux.org/alpine/', '/nonexistent')).toBeUndefined();
  });
  it('is an http(s) mirror as it is', async () => {
    expect(await vmBuildCdn('http://mirror.example/alpine/', '/nonexistent')).toBe(
      'http://mirror.example/alpine',
    );
  });
  it("serves a file:// mirror through Packer's HTTP server", async () => {
    const http = await mkdtemp(join(tmpdir(), 'vm-mirror-'));
    dirs.push(http);
    expect(await vmBuildCdn('file:///srv/alpine-mirror', http)).toBe('http://@PACKER_HTTP_ADDR@/cdn');
    expect((await lstat(join(http, 'cdn'))).isSymbolicLink()).toBe(true);
    expect(await readlink(join(http, 'cdn'))).toBe('/srv/alpine-mirror');
  });
});

describe('packerVariant: BUILD_CDN', () => {
  it('is in the setup environment only when given', () => {
    const image = new Image(sampleConfig({ firmware: 'bios', scripts: ['setup'], script_dirs: [] }), '/w');
    const inp = {
      image,
      scriptsDir: '/s',
      isoPath: '/i.iso',
      isoChecksum: 'none',
      outputDir: '/o',
      accelerator: 'tcg',
      cpus: 1,
      serialLog: '/l',
      debug: false,
      boot: { qemuargs: [], httpDirectory: '/h', sshKeyFile: '/k' },
    };
    expect(packerVariant(inp).environment.some((e) => e.startsWith('BUILD_CDN='))).toBe(false);
    expect(packerVariant({ ...inp, buildCdn: 'http://@PACKER_HTTP_ADDR@/cdn' }).environment).toContain(
      'BUILD_CDN=http://@PACKER_HTTP_ADDR@/cdn',
    );
  });
});
