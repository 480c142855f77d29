/**
 * A matrix of 12 images whose local build is a stand-in of fixed duration, for the scale-out tests and bench:
 * the real CLI runs the real local step (`builder: vm`), with `packer` on PATH being test/fixtures/local/fake-packer (it sleeps
 * FAKE_PACKER_SECONDS and makes an empty qcow2), the ISO from a file:// mirror signed with a throwaway key, and
 * real conversion and checksums. 3 clouds (nocloud or aws, generic, azure) × 4 bootstraps, x86_64, BIOS.
 */
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fakeBuilderIso, LOCAL_FIXTURES, makeTestKey, publishIso } from '../fixtures/local/mirror.js';
import { makeOverlay, RELEASES_URL } from './overlay.js';

export interface ScaleOutFixture {
  base: string;
  /** the default file:// storage directory */
  store: string;
  /** stand-in build trace: "start <name> <ms>" / "end <name> <ms>" lines from every worker */
  trace: string;
  /** environment for ./build (PATH with the stand-in packer first) */
  env: Record<string, string>;
  /** the ./build options selecting the 12 images, for one work directory */
  args(work: string): string[];
  cleanup(): Promise<void>;
}

export const SCALE_OUT_IMAGES = 12;

export async function scaleOutFixture(opts: {
  /** storage_url template; default file://<base>/storage/{v_version}/{cloud}/{arch} (`store`) */
  storageUrl?: string;
  buildSeconds: number;
  /** aws instead of nocloud: 4 images imported and published to these regions (through the EC2 emulator) */
  awsRegions?: Record<string, boolean>;
}): Promise<ScaleOutFixture> {
  const base = await mkdtemp(join(tmpdir(), 'cib-scale-'));
  const key = await makeTestKey();
  const iso = join(base, 'fake.iso');
  await fakeBuilderIso(iso);
  const { cdnUrl } = await publishIso(join(base, 'cdn'), iso, {
    version: '3.24',
    release: '3.24.1',
    arch: 'x86_64',
    key,
  });
  const overlay = await makeOverlay({
    storageUrl: opts.storageUrl ?? `file://${join(base, 'storage')}/{v_version}/{cloud}/{arch}`,
    parent: base,
    clouds: [opts.awsRegions ? 'aws' : 'nocloud', 'generic', 'azure'],
    cloudSettings: opts.awsRegions
      ? {
          aws: {
            image_format: 'vhd',
            image_format_opts: 'vhd/fixed_force-size',
            access: { PUBLIC: true },
            regions: opts.awsRegions,
          },
        }
      : {},
    bootstraps: ['tiny', 'cloudinit', 'b3', 'b4'],
    firmwares: ['bios'],
    // the Packer/QEMU path, whose `packer` is the stand-in (the chroot builder would build for real)
    defaults: { builder: 'vm' },
  });
  await mkdir(join(overlay, 'keys'), { recursive: true });
  await writeFile(join(overlay, 'keys', 'release.asc'), key.publicArmored);
  const bin = join(base, 'bin');
  await mkdir(bin);
  await symlink(join(LOCAL_FIXTURES, 'fake-packer'), join(bin, 'packer'));
  const vars = join(base, 'tcg.pkrvars.hcl');
  await writeFile(vars, 'accelerator = "tcg"\n');
  const trace = join(base, 'trace');
  await writeFile(trace, '');
  return {
    base,
    store: join(base, 'storage'),
    trace,
    env: {
      PATH: `${bin}:${process.env.PATH ?? '/usr/bin:/bin'}`,
      FAKE_PACKER_SECONDS: String(opts.buildSeconds),
      FAKE_PACKER_TRACE: trace,
    },
    args: (work) => [
      '--work-dir',
      work,
      '--custom',
      overlay,
      '--releases-url',
      RELEASES_URL,
      '--cdn-url',
      cdnUrl,
      '--vars',
      vars,
      // fake-packer's images cannot boot: the boot test (the test step) is not what these tests are about
      '--disable',
      'test',
    ],
    cleanup: () => rm(base, { recursive: true, force: true }),
  };
}
