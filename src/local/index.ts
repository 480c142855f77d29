// Public API of the local build module (Packer + QEMU, conversion, compression, checksums).
import { createWriteStream, type WriteStream } from 'node:fs';
import { access, constants, mkdir, rename, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { execa } from 'execa';
import pLimit from 'p-limit';
import type { Logger } from 'pino';
import { parse as parseYaml } from 'yaml';
import type { Image } from '../state/image.js';
import { errorMessage, UserError } from '../util/errors.js';
import { writeFileAtomic } from '../util/fs.js';
import { onPath } from '../util/on-path.js';
import { restoreCredentials } from '../util/redact.js';
import type { ResourceDescriptor } from '../util/resource-descriptor.js';
import { type AccelChoice, probeAccelerator } from './accel.js';
import { loadApkKeys } from './apk.js';
import {
  type BuilderDecision,
  buildChroot,
  chrootDecision,
  type HostFacts,
  minirootfsUrl,
  probeHost,
} from './chroot/index.js';
import { edgeMinirootfs } from './chroot/plan.js';
import {
  type ConvertTarget,
  checkOutputSettings,
  compressImage,
  convertImage,
  type Runner,
  writeChecksum,
} from './convert.js';
import {
  type BootFiles,
  DEFAULT_BOOT_INITRD,
  DEFAULT_BOOT_KERNEL,
  extractBootFiles,
  prepareBuilderBoot,
} from './direct-boot.js';
import { fetchText } from './download.js';
import { ensureUefiFirmware, firmwarePath } from './firmware.js';
import { fetchVerifiedIso, loadTrustedKeys, type TrustedKeys, type VerifiedIso } from './iso.js';
import {
  assembleTemplateDir,
  detectPacker,
  initPlugins,
  type PackerInfo,
  packerBuildArgs,
  packerEnv,
} from './packer.js';
import { consoleTail, PackerFailure, packerFailureMessage, stripTerminal } from './packer-output.js';
import { type BuildState, formatElapsed, Progress, stateFromPackerLine } from './progress.js';
import { acceleratorFromVarFiles, bootloaderOf, defaultCpus, packerVariant } from './variant.js';
import { vmBuildCdn } from './vm-mirror.js';

/** What the local build reads of the run's options: these fields and no others (the CLI's set has them all). */
export interface LocalBuildOptions {
  /** repository root: packer/ templates, keys/ */
  readonly rootDir: string;
  /** work directory: iso/ cache, packer/<key> build dirs, scripts/, images */
  readonly workDir: string;
  /** --custom overlays, for their keys/ */
  readonly custom: readonly string[];
  /** --vars files handed to Packer */
  readonly vars: readonly string[];
  /** images built at once */
  readonly parallel: number;
  /** the Alpine mirror for ISOs, minirootfs and packages */
  readonly cdnUrl: string;
  /** --pad-uefi-bin-arch: architectures whose UEFI firmware is padded */
  readonly padUefiBinArch: readonly string[];
  readonly debug: boolean;
  readonly color: boolean;
}

/** Only the local build's fields of a wider option set (so nothing else is handed down by accident). */
export function localBuildOptions(o: LocalBuildOptions): LocalBuildOptions {
  return {
    rootDir: o.rootDir,
    workDir: o.workDir,
    custom: o.custom,
    vars: o.vars,
    parallel: o.parallel,
    cdnUrl: o.cdnUrl,
    padUefiBinArch: o.padUefiBinArch,
    debug: o.debug,
    color: o.color,
  };
}

export interface LocalBuildContext {
  readonly log: Logger;
  readonly options: LocalBuildOptions;
}

export interface LocalBuildResult {
  configKey: string;
  ok: boolean;
  error?: string;
  /** full Packer/QEMU log of this variant */
  logFile: string;
  /** the builder VM's serial console */
  serialLog?: string;
  /** sha512 of the upload file, when built */
  sha512?: string;
  /** accelerator the builder VM ran under */
  accelerator?: string;
  /** which builder made the image */
  builder?: 'chroot' | 'vm';
  /** chroot builder: the SOURCE_DATE_EPOCH of the image and the time of each phase (ms) */
  sourceDateEpoch?: number;
  timings?: Record<string, number>;
  elapsedMs?: number;
  /** what went into the disk (ISO or minirootfs, repository indexes), for the provenance */
  inputs?: ResourceDescriptor[];
}

/** Tunables of the build step itself (not Packer's): tests shorten them. */
export interface LocalBuildTuning {
  /** summary of all variants in the log every N ms (0: off); default 60 s */
  progressIntervalMs?: number;
  /** time limit for the KVM probe guest; default 5 s */
  kvmProbeTimeoutMs?: number;
  /** packer binary; default "packer" */
  packerBin?: string;
  /** the host facts the builder choice is made from (tests); default: probed */
  hostFacts?: HostFacts;
}

/** "x86_64 BIOS (extlinux)" */
function builderScope(image: Image): string {
  return `${image.config.arch} ${image.config.firmware.toUpperCase()} (${bootloaderOf(image)})`;
}

/**
 * The builder of each variant (its `builder` setting, else chroot where the host can run it), with one log
 * line per distinct choice saying why.
 */
async function chooseBuilders(
  images: readonly Image[],
  log: Logger,
  facts?: HostFacts,
): Promise<Map<string, BuilderDecision>> {
  const hf = facts ?? (await probeHost([...new Set(images.map((i) => i.config.arch))]));
  const out = new Map<string, BuilderDecision>();
  const said = new Set<string>();
  for (const image of images) {
    const setting = typeof image.config.builder === 'string' ? image.config.builder : null;
    const d = chrootDecision({ arch: image.config.arch, bootloader: bootloaderOf(image), setting }, hf);
    out.set(image.config.config_key, d);
    const line = `builder for ${builderScope(image)}: ${d.error ? 'none' : d.builder} (${d.error ?? d.reason})`;
    if (!said.has(line)) {
      said.add(line);
      if (d.error) log.error(line);
      else log.info({ builder: d.builder, mode: d.mode }, line);
    }
  }
  return out;
}

class VariantLog {
  readonly path: string;
  private readonly stream: WriteStream;
  constructor(path: string) {
    this.path = path;
    this.stream = createWriteStream(path, { flags: 'w' });
  }
  note(text: string): void {
    this.stream.write(`${new Date().toISOString()} [local] ${text}\n`);
  }
  raw(line: string): void {
    this.stream.write(`${line}\n`);
  }
  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.stream.end(resolve));
  }
}

const QEMU_PACKAGES: Record<string, string> = {
  x86_64: 'qemu-system-x86',
  aarch64: 'qemu-system-arm',
};

/** Memoise an async function per key for the duration of one buildLocal call (shared downloads, probes). */
function once<T>(): (key: string, fn: () => Promise<T>) => Promise<T> {
  const m = new Map<string, Promise<T>>();
  return (key, fn) => {
    let p = m.get(key);
    if (!p) {
      p = fn();
      m.set(key, p);
    }
    return p;
  };
}

function makeRunner(vlog: VariantLog): Runner {
  return async (cmd, args) => {
    vlog.note(`$ ${[cmd, ...args].join(' ')}`);
    let r: Awaited<ReturnType<typeof execa>>;
    try {
      r = await execa(cmd, args, { reject: false, all: true, stdin: 'ignore' });
    } catch (err) {
      throw new UserError(`${cmd}: ${errorMessage(err)}`);
    }
    const out = String(r.all ?? '').trim();
    if (out) vlog.raw(out);
    if (r.exitCode === undefined) {
      throw new UserError(`${cmd} is not installed (needed to convert images)`);
    }
    if (r.exitCode !== 0) {
      throw new UserError(
        `${cmd} ${args[0] ?? ''} failed (exit ${r.exitCode}): ${out.split('\n').slice(-3).join(' ')}`,
      );
    }
  };
}

/**
 * The UEFI firmware file for -bios: qemu.firmware when it names a file of its own, else (unset, or the work
 * directory's uefi-<arch>.bin as the configs have it) the one provisioned in work/firmware.
 */
async function firmwareFor(image: Image, setting: string, workDir: string, sh: Shared): Promise<string> {
  const provisioned = firmwarePath(workDir, image.config.arch);
  const inWork =
    !setting ||
    resolve(workDir, setting) === provisioned ||
    /(^|\/)work\/firmware\/uefi-[^/]+\.bin$/.test(setting);
  if (inWork) return await sh.firmware(image);
  const path = resolve(setting);
  try {
    await access(path, constants.R_OK);
  } catch {
    throw new UserError(`${image.config.config_key}: qemu.firmware ${setting} does not exist`);
  }
  return path;
}

/** The variant's minirootfs: the release's, or for edge the newest one latest-releases.yaml names. */
async function minirootfsUrlOf(image: Image, cdnUrl: string): Promise<string> {
  const c = image.config;
  if (image.vVersion !== 'edge') return minirootfsUrl(cdnUrl, image.vVersion, c.release, c.arch);
  const dir = `${cdnUrl.replace(/\/+$/, '')}/edge/releases/${c.arch}`;
  const file = edgeMinirootfs(parseYaml(await fetchText(`${dir}/latest-releases.yaml`)));
  if (!file) throw new UserError(`${dir}/latest-releases.yaml names no alpine-minirootfs`);
  return `${dir}/${file}`;
}

function isoUrlOf(image: Image, cdnUrl: string): string {
  const q = image.config.qemu;
  // work/images.yaml holds URLs with their credentials redacted: the CDN URL's come back here
  if (q.iso_url) return restoreCredentials(q.iso_url, [cdnUrl]);
  const c = image.config;
  return `${cdnUrl}/${image.vVersion}/releases/${c.arch}/alpine-virt-${c.release}-${c.arch}.iso`;
}

/**
 * Build every image (at most options.parallel at once): Packer + QEMU produce <localDir>/image.qcow2,
 * which is converted to image_format, compressed per image_compress and checksummed (.sha512).
 * One failure does not stop the others. The caller records `built` in the metadata of those that succeeded.
 */
export async function buildLocal(
  images: readonly Image[],
  ctx: LocalBuildContext,
  tuning: LocalBuildTuning = {},
): Promise<LocalBuildResult[]> {
  const { log, options } = ctx;
  if (images.length === 0) return [];
  const t0 = Date.now();
  const workDir = options.workDir;
  const templateDir = join(options.rootDir, 'packer');

  // ---- once per run ----
  const builders = await chooseBuilders(images, log, tuning.hostFacts);
  let packer: PackerInfo | undefined;
  if ([...builders.values()].some((d) => d.builder === 'vm' && !d.error)) {
    packer = await detectPacker(tuning.packerBin ?? 'packer');
    log.info(
      { packer: packer.version.text, init: packer.features.init, bundledQemu: packer.features.bundledQemu },
      `Packer ${packer.version.text}`,
    );
    await initPlugins(packer, templateDir, workDir, log);
  }
  const keyDirs = [join(options.rootDir, 'keys'), ...options.custom.map((d) => join(d, 'keys'))];
  const trusted = await loadTrustedKeys(keyDirs);
  const apkKeys = await loadApkKeys(keyDirs.map((d) => join(d, 'apk')));
  log.debug({ keys: trusted.files }, `${trusted.keys.length} trusted release signing key(s)`);
  const forcedAccel = await acceleratorFromVarFiles(options.vars);
  const cpusAuto = defaultCpus(options.parallel);

  const isoOnce = once<VerifiedIso>();
  const bootOnce = once<BootFiles>();
  const rootfsOnce = once<VerifiedIso>();
  const fwOnce = once<string>();
  const accelOnce = once<AccelChoice>();
  const progress = new Progress(
    images.map((i) => i.config.config_key),
    log,
  );
  progress.startTicker(tuning.progressIntervalMs ?? 60_000);
  const limit = pLimit(Math.max(1, options.parallel));

  const shared: Shared = {
    packer,
    trusted,
    templateDir,
    forcedAccel,
    cpusAuto,
    progress,
    builders,
    iso: (url) => isoOnce(url, () => fetchVerifiedIso(url, { cacheDir: join(workDir, 'iso'), trusted, log })),
    bootFiles: (iso, kernel, initrd) =>
      bootOnce(`${iso.path}\0${kernel}\0${initrd}`, () =>
        extractBootFiles(
          { path: iso.path, digest: iso.packerChecksum },
          join(workDir, 'iso', `${iso.path.split('/').pop()}.boot`),
          { kernel, initrd },
        ),
      ),
    minirootfs: (url) =>
      rootfsOnce(url, () =>
        fetchVerifiedIso(url, { cacheDir: join(workDir, 'minirootfs'), trusted, log, what: 'minirootfs' }),
      ),
    firmware: (image) =>
      fwOnce(image.config.arch, () =>
        ensureUefiFirmware(image.config.arch, {
          workDir,
          cdnUrl: options.cdnUrl,
          vVersion: image.vVersion,
          pad: options.padUefiBinArch.includes(image.config.arch),
          log,
          apkKeys,
        }),
      ),
    accelerator: (arch) =>
      accelOnce(arch, async () => {
        if (forcedAccel) {
          const c: AccelChoice = {
            accelerator: forcedAccel.value,
            reason: `set in --vars ${forcedAccel.file}`,
          };
          log.info(`accelerator for ${arch} builds: ${c.accelerator} (${c.reason})`);
          return c;
        }
        const c = await probeAccelerator({ arch, timeoutMs: tuning.kvmProbeTimeoutMs ?? 5000 });
        log.info(
          { arch, accelerator: c.accelerator },
          `accelerator for ${arch} builds: ${c.accelerator.toUpperCase()} (${c.reason})`,
        );
        return c;
      }),
  };

  let results: LocalBuildResult[];
  try {
    results = await Promise.all(images.map((image) => limit(() => buildOne(image, ctx, shared))));
  } finally {
    progress.stop();
  }
  const ok = results.filter((r) => r.ok).length;
  const failed = results.filter((r) => !r.ok);
  log.info(
    { built: ok, failed: failed.length, elapsed: formatElapsed(Date.now() - t0) },
    `local: ${ok} built, ${failed.length} failed in ${formatElapsed(Date.now() - t0)}`,
  );
  for (const f of failed)
    log.error(
      { variant: f.configKey, log: f.logFile },
      `${f.configKey}: ${f.error} (full log: ${f.logFile})`,
    );
  return results;
}

interface Shared {
  /** undefined when no variant uses the VM builder */
  packer?: PackerInfo;
  builders: Map<string, BuilderDecision>;
  minirootfs(url: string): Promise<VerifiedIso>;
  trusted: TrustedKeys;
  templateDir: string;
  forcedAccel?: { value: string; file: string };
  cpusAuto: number;
  progress: Progress;
  iso(url: string): Promise<VerifiedIso>;
  bootFiles(iso: VerifiedIso, kernel: string, initrd: string): Promise<BootFiles>;
  firmware(image: Image): Promise<string>;
  accelerator(arch: string): Promise<AccelChoice>;
}

async function buildOne(image: Image, ctx: LocalBuildContext, sh: Shared): Promise<LocalBuildResult> {
  const { options, log } = ctx;
  const c = image.config;
  const key = c.config_key;
  const localDir = image.localDir;
  const logFile = join(localDir, 'build.log');
  const serialLog = join(localDir, 'serial.log');
  const outDir = join(localDir, '.packer-out');
  const started = Date.now();
  const set = (s: BuildState, detail?: string) => sh.progress.set(key, s, detail);
  await mkdir(localDir, { recursive: true });
  const vlog = new VariantLog(logFile);
  const result: LocalBuildResult = { configKey: key, ok: false, logFile, serialLog };
  try {
    set('preparing');
    vlog.note(`build ${image.imageName} (${key}) revision ${image.revision}`);
    const target: ConvertTarget = {
      configKey: key,
      source: image.localImage,
      format: c.image_format,
      formatOpts: c.image_format_opts,
      compress: c.image_compress,
      imagePath: image.imagePath,
      uploadPath: image.uploadPath,
    };
    checkOutputSettings(target);
    const decision = sh.builders.get(key);
    if (decision?.error) throw new UserError(decision.error);
    if (decision?.builder === 'chroot') {
      result.serialLog = undefined;
      await Promise.all(
        [image.localImage, image.imagePath, image.uploadPath, `${image.uploadPath}.sha512`].map((p) =>
          rm(p, { recursive: true, force: true }),
        ),
      );
      set('minirootfs');
      const url = await minirootfsUrlOf(image, options.cdnUrl);
      const rootfs = await sh.minirootfs(url);
      vlog.note(`minirootfs ${rootfs.path} (${rootfs.packerChecksum}, signed by ${rootfs.signedBy})`);
      result.inputs = [
        {
          uri: rootfs.url,
          digest: {
            ...(rootfs.sha256 ? { sha256: rootfs.sha256 } : {}),
            ...(rootfs.sha512 ? { sha512: rootfs.sha512 } : {}),
          },
        },
      ];
      const r = await buildChroot({
        image,
        workDir: options.workDir,
        rootDir: options.rootDir,
        cdnUrl: options.cdnUrl,
        debug: options.debug,
        mode: decision.mode ?? 'root',
        minirootfs: rootfs.path,
        vlog,
        set: (s, d) => set(s, d),
      });
      result.builder = 'chroot';
      result.sourceDateEpoch = r.sourceDateEpoch;
      result.timings = r.timings;
      vlog.note(`chroot builder phases (ms): ${JSON.stringify(r.timings)}`);
    } else {
      result.builder = 'vm';
      const qemuBin = `qemu-system-${c.arch}`;
      if (!(await onPath(qemuBin))) {
        throw new UserError(
          `${qemuBin} not found on PATH${QEMU_PACKAGES[c.arch] ? ` (Debian: apt-get install ${QEMU_PACKAGES[c.arch]})` : ''}`,
        );
      }
      // stale outputs of an earlier attempt must not survive a failed build
      await Promise.all(
        [
          image.localImage,
          image.imagePath,
          image.uploadPath,
          `${image.uploadPath}.sha512`,
          outDir,
          serialLog,
        ].map((p) => rm(p, { recursive: true, force: true })),
      );

      set('iso');
      const iso = await sh.iso(isoUrlOf(image, options.cdnUrl));
      vlog.note(`builder ISO ${iso.path} (${iso.packerChecksum}, signed by ${iso.signedBy})`);
      result.inputs = [
        {
          uri: iso.url,
          digest: {
            ...(iso.sha256 ? { sha256: iso.sha256 } : {}),
            ...(iso.sha512 ? { sha512: iso.sha512 } : {}),
          },
        },
      ];
      const q = c.qemu;
      const bootFiles = await sh.bootFiles(
        iso,
        q.boot_kernel || DEFAULT_BOOT_KERNEL,
        q.boot_initrd || DEFAULT_BOOT_INITRD,
      );
      vlog.note(`builder kernel ${bootFiles.kernel}, initramfs ${bootFiles.initrd} (from the verified ISO)`);

      let firmware: string | undefined;
      const fwSetting = q.firmware ?? '';
      if (c.firmware === 'uefi' || c.arch === 'aarch64' || fwSetting) {
        set('firmware');
        firmware = await firmwareFor(image, fwSetting, options.workDir, sh);
        vlog.note(`UEFI firmware ${firmware}`);
      }

      set('accelerator');
      const accel = await sh.accelerator(c.arch);
      result.accelerator = accel.accelerator;
      vlog.note(`accelerator ${accel.accelerator} (${accel.reason})`);

      const buildDir = join(options.workDir, 'packer', key);
      if (!sh.packer) throw new UserError('Packer was not set up for this run');
      await assembleTemplateDir(sh.templateDir, buildDir, sh.packer);
      const boot = await prepareBuilderBoot(buildDir, bootFiles, c.arch, q.boot_cmdline ?? '');
      const variant = packerVariant({
        image,
        scriptsDir: join(options.workDir, 'scripts'),
        isoPath: iso.path,
        isoChecksum: iso.packerChecksum,
        outputDir: outDir,
        accelerator: accel.accelerator,
        cpus: sh.cpusAuto,
        firmware,
        serialLog,
        debug: options.debug,
        credentialUrls: [options.cdnUrl],
        boot,
        buildCdn: await vmBuildCdn(options.cdnUrl, boot.httpDirectory),
      });
      for (const p of [...variant.scripts, ...variant.script_dirs]) {
        try {
          await access(p);
        } catch {
          throw new UserError(
            `${key}: ${p} is missing (scripts and script_dirs are looked up in work/scripts)`,
          );
        }
      }
      // variant.json can hold credentials (a --cdn-url with user:password restored into REPOS for the builder
      // VM's apk): readable by the owner only, and removed with the one-time key once Packer is done
      const variantFile = join(buildDir, 'variant.json');
      await writeFileAtomic(variantFile, `${JSON.stringify(variant, null, 2)}\n`, 0o600);

      try {
        await runPacker(image, ctx, sh, buildDir, variantFile, vlog, set, serialLog);
      } finally {
        // the one-time key is of no use once the builder VM is gone
        await rm(boot.sshKeyFile, { force: true });
        await rm(variantFile, { force: true });
      }

      await rename(join(outDir, 'image.qcow2'), image.localImage);
      await rm(outDir, { recursive: true, force: true });
    }

    set('converting', c.image_format);
    const run = makeRunner(vlog);
    await convertImage(target, run);
    if (target.compress) {
      set('compressing', target.compress);
      await compressImage(target, run);
    }
    set('checksum');
    result.sha512 = await writeChecksum(target.uploadPath);
    vlog.note(`built ${target.uploadPath} sha512 ${result.sha512}`);
    result.ok = true;
    result.elapsedMs = Date.now() - started;
    set('done');
  } catch (err) {
    result.error = errorMessage(err);
    result.elapsedMs = Date.now() - started;
    vlog.note(`FAILED: ${result.error}`);
    set('failed', result.error);
    log.error({ variant: key, log: logFile }, `${key}: build failed; full log: ${logFile}`);
    await rm(outDir, { recursive: true, force: true }).catch(() => {});
  } finally {
    await vlog.close();
  }
  return result;
}

async function runPacker(
  image: Image,
  ctx: LocalBuildContext,
  sh: Shared,
  buildDir: string,
  variantFile: string,
  vlog: VariantLog,
  set: (s: BuildState, detail?: string) => void,
  serialLog?: string,
): Promise<void> {
  const { options, log } = ctx;
  const key = image.config.config_key;
  const defaults = join(buildDir, 'build.pkrvars.hcl');
  await writeFileAtomic(defaults, `variant_file = ${JSON.stringify(variantFile)}\n`);
  if (!sh.packer) throw new UserError('Packer was not set up for this run');
  const packer = sh.packer;
  const args = packerBuildArgs({
    info: packer,
    dir: buildDir,
    varFiles: [defaults, ...options.vars],
    color: options.color,
  });
  vlog.note(`$ cd ${buildDir} && ${packer.bin} ${args.join(' ')}`);
  set('booting');
  const child = execa(packer.bin, args, {
    cwd: buildDir,
    env: {
      ...packerEnv(options.workDir),
      PACKER_LOG: '1',
    },
    reject: false,
    all: true,
    buffer: false,
    stdin: 'ignore',
  });
  // what to say when it fails: Packer's own error, its last output and the VM's last console lines, found
  // in lines stripped of terminal escapes whatever the colour setting (build.log holds plain text too)
  const failure = new PackerFailure();
  if (child.all) {
    const rl = createInterface({ input: child.all, crlfDelay: Number.POSITIVE_INFINITY });
    for await (const raw of rl) {
      const line = stripTerminal(raw);
      if (!PackerFailure.loggable(line)) continue;
      vlog.raw(line);
      const st = stateFromPackerLine(line);
      if (st) set(st.state, st.detail);
      failure.add(line);
      if (options.debug) log.debug({ variant: key }, line);
    }
  }
  const r = await child;
  if (r.exitCode !== 0) {
    const consoleLines = await consoleTail(serialLog);
    throw new UserError(packerFailureMessage(r.exitCode, failure.summary, consoleLines));
  }
}
