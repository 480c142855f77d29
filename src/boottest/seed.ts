// The instance data a boot test gives the guest, in the form its bootstrap reads it, and the NoCloud seed
// volume (made without root: mkfs.vfat + mcopy, or xorriso).
//
// tiny-cloud 3.0.7 (read from its scripts, confirmed by booting): the seed is found by the label cidata/CIDATA,
// vfat first, then iso9660; SSH keys come from the AWS-style `public-keys` map of meta-data (the list form does
// not work), the hostname from meta-data `hostname` (not `local-hostname`), and user-data runs only when it is
// a `#!` script — `#cloud-config` is silently ignored. cloud-init's NoCloud reads meta-data and cloud-config.
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { stringify } from 'yaml';
import { UserError } from '../util/errors.js';

/** What the guest is told about itself: the same data whichever way (NoCloud, IMDS) it is served. */
export interface InstanceData {
  instanceId: string;
  hostname: string;
  /** the test's own public key, for the login user */
  sshPublicKey: string;
  /** user-data as the bootstrap wants it (see userData) */
  userData: string;
  /** where the user-data script leaves its marker */
  markerPath: string;
  /** what the marker file holds */
  markerText: string;
}

export type Bootstrap = 'tiny' | 'cloudinit';

export function bootstrapOf(bootstrap: string): Bootstrap {
  return bootstrap === 'cloudinit' ? 'cloudinit' : 'tiny';
}

/** The marker script: tiny-cloud runs user-data only when it starts with `#!`. */
export function userDataScript(markerPath: string, markerText: string): string {
  return `#!/bin/sh\n# boot test: leave a marker\nprintf '%s\\n' ${shellQuote(markerText)} > ${shellQuote(markerPath)}\n`;
}

/** cloud-init: cloud-config whose runcmd leaves the same marker (and the key for the login user). */
export function cloudConfig(data: InstanceData, login: string): string {
  const doc = {
    hostname: data.hostname,
    users: [
      {
        name: login,
        ssh_authorized_keys: [data.sshPublicKey],
        sudo: 'ALL=(ALL) NOPASSWD:ALL',
        doas: ['permit nopass ' + login],
        lock_passwd: true,
      },
    ],
    runcmd: [['sh', '-c', `printf '%s\\n' ${shellQuote(data.markerText)} > ${shellQuote(data.markerPath)}`]],
  };
  return `#cloud-config\n${stringify(doc, { lineWidth: 0 })}`;
}

/** The instance data for one image: its user-data in the form its bootstrap runs. */
export function instanceData(o: {
  instanceId: string;
  hostname: string;
  sshPublicKey: string;
  bootstrap: Bootstrap;
  login: string;
}): InstanceData {
  const markerPath = '/var/tmp/boot-test-user-data';
  const markerText = `user-data ran for ${o.instanceId}`;
  const base = { ...o, markerPath, markerText, userData: '' };
  base.userData =
    o.bootstrap === 'cloudinit' ? cloudConfig(base, o.login) : userDataScript(markerPath, markerText);
  return base;
}

/** NoCloud meta-data: both hostname keys (tiny-cloud reads `hostname`, cloud-init `local-hostname`). */
export function metaData(data: InstanceData): string {
  return stringify(
    {
      'instance-id': data.instanceId,
      hostname: data.hostname,
      'local-hostname': data.hostname,
      'public-keys': { 'boot-test': { 'openssh-key': data.sshPublicKey } },
    },
    { lineWidth: 0 },
  );
}

/** The files of a NoCloud seed. */
export function seedFiles(data: InstanceData): Record<string, string> {
  return { 'meta-data': metaData(data), 'user-data': data.userData };
}

export type SeedFormat = 'vfat' | 'iso9660';

/**
 * Write the seed volume (label cidata) to `path`, without root: vfat with mkfs.vfat + mcopy (what tiny-cloud
 * tries first), or iso9660 with xorriso (what cloud-init documents). Returns the path.
 */
export async function makeSeed(
  path: string,
  files: Record<string, string>,
  format: SeedFormat,
): Promise<string> {
  const dir = `${path}.d`;
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  try {
    for (const [name, text] of Object.entries(files)) await writeFile(join(dir, name), text);
    const names = Object.keys(files).map((n) => join(dir, n));
    await rm(path, { force: true });
    if (format === 'vfat') {
      await tool('mkfs.vfat', ['-n', 'CIDATA', '-C', path, '1024'], 'dosfstools');
      await tool('mcopy', ['-i', path, ...names, '::/'], 'mtools');
    } else {
      await tool(
        'xorriso',
        ['-as', 'mkisofs', '-quiet', '-o', path, '-V', 'cidata', '-J', '-r', ...names],
        'xorriso',
      );
    }
    return path;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function tool(cmd: string, args: string[], pkg: string): Promise<void> {
  const r = await execa(cmd, args, { reject: false, all: true, stdin: 'ignore' });
  if (r.failed && r.exitCode === undefined) {
    throw new UserError(`${cmd} is not installed (needed for the boot test's NoCloud seed; Debian: ${pkg})`);
  }
  if (r.exitCode !== 0) {
    throw new UserError(
      `${cmd} failed (exit ${r.exitCode}): ${String(r.all ?? '')
        .trim()
        .slice(-300)}`,
    );
  }
}

/** Single-quote for sh. */
export function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}
