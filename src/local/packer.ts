// Everything that depends on the installed Packer's version is decided here, in one place:
//   - Packer >= 1.7 understands `packer { required_plugins }` and `packer init`; current Packer (>= 1.10) no
//     longer bundles the qemu builder, so the plugin is installed with `packer init` into work/packer_plugin.
//   - Packer 1.6.6 (Debian 12) has the qemu builder built in, has no `init`, and rejects required_plugins,
//     so packer/plugins.pkr.hcl is left out of its build directory.
// Neither version gets the qemu `firmware` argument (1.6.6 rejects it): UEFI firmware goes in qemuargs as -bios.
import { copyFile, mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import type { Logger } from 'pino';
import { UserError } from '../util/errors.js';

export interface PackerVersion {
  major: number;
  minor: number;
  patch: number;
  /** as printed, e.g. "1.6.6" */
  text: string;
}

export interface PackerFeatures {
  /** `packer init` and `packer { required_plugins {} }` exist (>= 1.7.0) */
  init: boolean;
  /** the qemu builder is built in (< 1.10.0); later versions need the plugin */
  bundledQemu: boolean;
}

export interface PackerInfo {
  bin: string;
  version: PackerVersion;
  features: PackerFeatures;
}

/** Parse `packer version` / `packer --version` output ("Packer v1.6.6", "1.11.2", ...). */
export function parsePackerVersion(output: string): PackerVersion {
  const m = /(?:^|\s|v)(\d+)\.(\d+)\.(\d+)/.exec(output.trim());
  if (!m) throw new UserError(`cannot read the Packer version from ${JSON.stringify(output.slice(0, 80))}`);
  const [major, minor, patch] = [Number(m[1]), Number(m[2]), Number(m[3])];
  return { major, minor, patch, text: `${major}.${minor}.${patch}` };
}

function atLeast(v: PackerVersion, major: number, minor: number): boolean {
  return v.major > major || (v.major === major && v.minor >= minor);
}

export function packerFeatures(v: PackerVersion): PackerFeatures {
  if (!atLeast(v, 1, 6)) {
    throw new UserError(`Packer ${v.text} is too old: at least 1.6.6 is needed (HCL2 templates)`);
  }
  return { init: atLeast(v, 1, 7), bundledQemu: !atLeast(v, 1, 10) };
}

/** Packer's environment: caches and plugins under the work directory, no update check, UTC. */
export function packerEnv(workDir: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    TZ: 'UTC',
    CHECKPOINT_DISABLE: '1',
    PACKER_CACHE_DIR: join(workDir, 'packer_cache'),
    PACKER_PLUGIN_PATH: join(workDir, 'packer_plugin'),
    ...extra,
  };
}

export async function detectPacker(bin = 'packer'): Promise<PackerInfo> {
  let out: string;
  try {
    const r = await execa(bin, ['version'], { env: { CHECKPOINT_DISABLE: '1' }, timeout: 30_000 });
    out = r.stdout;
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === 'ENOENT') {
      throw new UserError(
        `${bin} not found on PATH: install Packer (Debian: apt-get install packer; or https://developer.hashicorp.com/packer/install)`,
      );
    }
    throw new UserError(`${bin} version failed: ${e.stderr || e.message}`);
  }
  const version = parsePackerVersion(out);
  return { bin, version, features: packerFeatures(version) };
}

/** The template files a build directory gets for this Packer. */
export function templateFiles(names: readonly string[], features: PackerFeatures): string[] {
  return names.filter((n) => n.endsWith('.pkr.hcl') && (features.init || n !== 'plugins.pkr.hcl')).sort();
}

/** Copy packer/*.pkr.hcl (the ones this Packer understands) into `dest`, replacing what was there. */
export async function assembleTemplateDir(
  templateDir: string,
  dest: string,
  info: PackerInfo,
): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(templateDir);
  } catch {
    throw new UserError(`Packer template directory ${templateDir} is missing`);
  }
  const files = templateFiles(names, info.features);
  if (!files.includes('alpine.pkr.hcl'))
    throw new UserError(`${join(templateDir, 'alpine.pkr.hcl')} is missing`);
  await rm(dest, { recursive: true, force: true });
  await mkdir(dest, { recursive: true });
  for (const f of files) await copyFile(join(templateDir, f), join(dest, f));
  return files;
}

/**
 * Install the plugins named in packer/plugins.pkr.hcl (Packer >= 1.7 only; a no-op for 1.6.6).
 * Run once per `build local`, before any build starts.
 */
export async function initPlugins(
  info: PackerInfo,
  templateDir: string,
  workDir: string,
  log: Logger,
): Promise<void> {
  if (!info.features.init) {
    log.info(`Packer ${info.version.text}: qemu builder built in, no plugins to install`);
    return;
  }
  const dir = join(workDir, 'packer', '.init');
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  await copyFile(join(templateDir, 'plugins.pkr.hcl'), join(dir, 'plugins.pkr.hcl'));
  log.info(
    `Packer ${info.version.text}: installing plugins (packer init) into ${packerEnv(workDir).PACKER_PLUGIN_PATH}`,
  );
  const r = await execa(info.bin, ['init', '.'], {
    cwd: dir,
    env: packerEnv(workDir),
    reject: false,
    all: true,
    timeout: 10 * 60_000,
  });
  if (r.exitCode !== 0) {
    throw new UserError(
      `packer init failed (exit ${r.exitCode}): ${String(r.all ?? '')
        .trim()
        .slice(-2000)}`,
    );
  }
}

export interface PackerBuildArgs {
  info: PackerInfo;
  /** the assembled build directory */
  dir: string;
  /** var files in order: generated defaults first, then the user's --vars (later ones win) */
  varFiles: readonly string[];
  color: boolean;
}

/** The `packer build` command line (arguments after the binary). */
export function packerBuildArgs(a: PackerBuildArgs): string[] {
  const args = ['build', '-timestamp-ui'];
  if (!a.color) args.push('-color=false');
  for (const f of a.varFiles) args.push(`-var-file=${f}`);
  args.push('.');
  return args;
}
