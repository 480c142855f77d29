// One boot test: boot the built image on a throwaway overlay, give it instance data the way its cloud does,
// SSH in as its login user with the injected key, run the checks, power it off, record the result.
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { mkdir, readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { CloudPlugin, InstanceMetadataService } from '../clouds/types.js';
import type { AccelChoice } from '../local/accel.js';
import type { BootTestRecord, CheckResult } from '../state/boot-test.js';
import type { Image } from '../state/image.js';
import { processAlive } from '../util/process.js';
import { type Expected, evaluate, probeScript, sections } from './checks.js';
import { type MetadataEndpoint, serveMetadata } from './metadata-server.js';
import {
  cpuFor,
  createOverlay,
  fatalConsoleLine,
  freePort,
  growthMiB,
  killGroup,
  machineFor,
  pdeathsigWrapper,
  QEMU_FORMATS,
  qemuArgs,
  type RunningVm,
  readPid,
  removeQuietly,
  SerialWatcher,
  serialTail,
  startVm,
  type VmSpec,
  virtualSize,
} from './qemu.js';
import { bootstrapOf, instanceData, makeSeed, type SeedFormat, seedFiles } from './seed.js';
import { connectError, connectOnce, type GuestSession, testKeyPair } from './ssh.js';

export interface BootTestTuning {
  /** time from QEMU's start until SSH must answer; default 300 s (480 s aarch64) under TCG, 90 s under KVM */
  bootTimeoutMs?: number;
  /**
   * once the login prompt is up (the default runlevel has finished, sshd would have started), how long SSH may
   * still take to answer; default 45 s under TCG, 15 s under KVM
   */
  sshGraceMs?: number;
  /** time from the poweroff command until QEMU must have exited; default 180 s under TCG, 60 s under KVM */
  poweroffTimeoutMs?: number;
  memoryMiB?: number;
  cpus?: number;
  /** how much larger than the image the test disk is (a root file system that grows takes it); default growthMiB */
  growMiB?: number;
  seedFormat?: SeedFormat;
}

export interface BootTestContext {
  readonly log: Logger;
  readonly workDir: string;
  /** the accelerator, chosen once per run as for local builds */
  accelerator(arch: string): Promise<AccelChoice>;
  /** UEFI firmware for -bios */
  firmware(image: Image): Promise<string>;
  cloud(name: string): CloudPlugin;
  readonly reaper: Reaper;
  readonly tuning?: BootTestTuning;
  readonly now?: () => Date;
  /** told each phase as the test reaches it (the live status of `build test`) */
  readonly onPhase?: (phase: BootTestPhase, detail?: string) => void;
}

/** The phases of one boot test, in order. */
export type BootTestPhase = 'preparing' | 'booting' | 'waiting for ssh' | 'checking' | 'powering off';

/** Where a boot test keeps its throwaway files: work/boot-test/<build pid>-<random>/ */
export function runDirRoot(workDir: string): string {
  return join(workDir, 'boot-test');
}

/**
 * Kills the VMs and removes the throwaway files of the running tests when the build gets SIGINT, SIGTERM or
 * SIGHUP, then lets the signal take its course. One per step run; install() and uninstall() bracket it.
 */
export class Reaper {
  private readonly live = new Map<number, string[]>();
  private readonly dirs = new Set<string>();
  private readonly handler = (sig: NodeJS.Signals) => {
    this.reapNow();
    this.uninstall();
    process.kill(process.pid, sig);
  };
  private installed = false;

  install(): void {
    if (this.installed) return;
    this.installed = true;
    for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(s, this.handler);
  }

  uninstall(): void {
    if (!this.installed) return;
    this.installed = false;
    for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.off(s, this.handler);
  }

  addDir(dir: string): void {
    this.dirs.add(dir);
  }

  removeDir(dir: string): void {
    this.dirs.delete(dir);
  }

  addVm(pid: number): void {
    this.live.set(pid, []);
  }

  removeVm(pid: number): void {
    this.live.delete(pid);
  }

  /** Synchronously: kill every VM's process group, remove every run directory. */
  reapNow(): void {
    for (const pid of this.live.keys()) killGroup(pid);
    this.live.clear();
    for (const d of this.dirs) {
      try {
        rmSync(d, { recursive: true, force: true });
      } catch {
        // best effort while dying
      }
    }
    this.dirs.clear();
  }
}

/**
 * Remove what a killed earlier run left in work/boot-test: directories whose build process is gone, after
 * killing the QEMU recorded in them if it still runs (it normally died with its parent).
 */
export async function sweepStale(workDir: string, log: Logger): Promise<number> {
  const root = runDirRoot(workDir);
  let entries: string[];
  try {
    entries = await readdir(root);
  } catch {
    return 0;
  }
  let n = 0;
  for (const e of entries) {
    const owner = Number(e.split('-')[0]);
    if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && processAlive(owner)) continue;
    if (owner === process.pid) continue;
    const dir = join(root, e);
    const qpid = await readPid(join(dir, 'qemu.pid'));
    if (qpid && processAlive(qpid)) {
      const cmd = await readFile(`/proc/${qpid}/cmdline`, 'utf8').catch(() => '');
      if (cmd.includes(dir)) killGroup(qpid);
    }
    await removeQuietly(dir);
    log.warn(`boot test: removed ${dir}, left by a run that was killed`);
    n++;
  }
  return n;
}

/** The file the test boots: the converted image (qemu reads every image_format but raw.tar.gz), else Packer's. */
export function bootFile(image: Image): { path: string; format: string } {
  const f = QEMU_FORMATS[image.config.image_format];
  return f ? { path: image.imagePath, format: f } : { path: image.localImage, format: 'qcow2' };
}

function expectedOf(
  image: Image,
  hostname: string,
  marker: string,
  markerPath: string,
  growMiB: number,
): Expected {
  const c = image.config;
  return {
    hostname,
    marker,
    markerPath,
    packagesAdd: [...c.packages.add, ...c.packages.noscripts],
    packagesDel: [...c.packages.del],
    services: Object.fromEntries(Object.entries(c.services.enable).map(([lvl, s]) => [lvl, [...s]])),
    kernelOptions: [...c.kernel_options],
    motd: c.motd,
    grownMiB: growMiB,
  };
}

/** The getty's prompt on the serial console, e.g. "boot-test-1a2b3c4d login: ", or "(none) login: " when the
 *  image never set a host name (then SSH still decides) */
export const LOGIN_PROMPT = /(?:[\w.-]+|\(none\)) login: /;

const sec = (ms: number) => Math.round(ms / 100) / 10;

/** Run the boot test of one built image. Never throws for a failing image: the record says what failed. */
export async function testImage(image: Image, ctx: BootTestContext): Promise<BootTestRecord> {
  const c = image.config;
  const t = ctx.tuning ?? {};
  const now = ctx.now ?? (() => new Date());
  const log = ctx.log.child({ image: image.imageName });
  const runDir = join(runDirRoot(ctx.workDir), `${process.pid}-${randomBytes(4).toString('hex')}`);
  const bootLogName = `${image.imageName}.boot.log`;
  const bootLog = join(image.localDir, bootLogName);
  const checks: CheckResult[] = [];
  const rec: BootTestRecord = { status: 'failed', at: '', built: image.state.built, boot_log: bootLogName };
  let vm: RunningVm | undefined;
  let endpoint: MetadataEndpoint | undefined;
  let guest: GuestSession | undefined;
  let service: InstanceMetadataService | undefined;
  const serial = new SerialWatcher(bootLog);
  const phase = ctx.onPhase ?? (() => {});
  ctx.reaper.addDir(runDir);
  const fail = (check: string, detail: string, withConsole = true) => {
    checks.push({ name: check, ok: false, detail });
    const tail = withConsole ? serialTail(serial.all) : '';
    const console = tail
      ? `\n--- serial console, last lines ---\n${tail}`
      : withConsole
        ? ' (the serial console stayed silent: no boot loader or kernel output)'
        : '';
    rec.error = `check ${check} failed: ${detail}${console}`;
  };
  try {
    phase('preparing');
    await mkdir(runDir, { recursive: true });
    const file = bootFile(image);
    try {
      rec.footprint = { image_bytes: (await stat(file.path)).size };
    } catch {
      throw new BootSetupError(`${file.path} is missing: run the local step first`);
    }
    const accel = await ctx.accelerator(c.arch);
    rec.accelerator = accel.accelerator;
    const tcg = accel.accelerator !== 'kvm';
    const bootTimeoutMs = t.bootTimeoutMs ?? (tcg ? (c.arch === 'aarch64' ? 480_000 : 300_000) : 90_000);
    const sshGraceMs = t.sshGraceMs ?? (tcg ? 45_000 : 15_000);

    // instance data, served the way the image's cloud serves it
    const id = randomBytes(4).toString('hex');
    const keys = testKeyPair(`boot-test-${id}`);
    const data = instanceData({
      instanceId: `i-boottest${id}`,
      hostname: `boot-test-${id}`,
      sshPublicKey: keys.publicKey,
      bootstrap: bootstrapOf(c.bootstrap),
      login: c.login,
    });
    const plugin = ctx.cloud(c.cloud);
    let seed: string | undefined;
    if (plugin.bootTestMetadata) {
      service = plugin.bootTestMetadata(data);
      endpoint = await serveMetadata(service, runDir);
      rec.datasource = service.name;
    } else {
      const format = t.seedFormat ?? 'vfat';
      seed = await makeSeed(join(runDir, 'seed.img'), seedFiles(data), format);
      rec.datasource = `nocloud-${format}`;
    }

    const overlay = join(runDir, 'overlay.qcow2');
    const imageSize = await virtualSize(file.path, file.format);
    const growMiB = t.growMiB ?? growthMiB(imageSize);
    await createOverlay(file.path, file.format, overlay, imageSize + growMiB * 2 ** 20);
    const firmware = c.firmware === 'uefi' || c.arch === 'aarch64' ? await ctx.firmware(image) : undefined;
    const spec: VmSpec = {
      arch: c.arch,
      machine: machineFor(c.arch, c.qemu?.machine_type),
      ...(firmware ? { firmware } : {}),
      ...(cpuFor(c.arch, c.qemu?.args, accel.accelerator)
        ? { cpu: cpuFor(c.arch, c.qemu?.args, accel.accelerator) }
        : {}),
      accelerator: accel.accelerator,
      memoryMiB: t.memoryMiB ?? 512,
      cpus: t.cpus ?? 2,
      disk: overlay,
      ...(seed ? { seed } : {}),
      serialLog: bootLog,
      pidFile: join(runDir, 'qemu.pid'),
      sshPort: await freePort(),
      ...(endpoint ? { guestNet: endpoint.guestNet, guestFwd: endpoint.guestFwd } : {}),
    };
    await removeQuietly(bootLog);
    const args = qemuArgs(spec);
    const binary = `qemu-system-${c.arch}`;
    log.debug({ qemu: [binary, ...args].join(' ') }, 'boot test: starting QEMU');
    phase('booting', accel.accelerator.toUpperCase());
    vm = startVm(binary, args, await pdeathsigWrapper());
    ctx.reaper.addVm(vm.pid);
    let exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
    void vm.exited.then((e) => {
      exited = e;
    });

    // ---- wait for the login prompt and SSH ----
    const times: NonNullable<BootTestRecord['times']> = {};
    rec.times = times;
    let lastSshError = 'no attempt yet';
    let nextAttempt = vm.startedAt + 2000;
    while (!guest) {
      await sleep(250);
      const text = await serial.poll();
      const elapsed = Date.now() - vm.startedAt;
      if (times.login_prompt === undefined && LOGIN_PROMPT.test(text)) {
        times.login_prompt = sec(elapsed);
        log.info(`boot test: login prompt after ${times.login_prompt} s`);
        phase('waiting for ssh', 'login prompt up');
      }
      if (exited) {
        const why = vm.stderr() ? `: ${vm.stderr().split('\n').slice(-3).join(' ')}` : '';
        fail('boot', `QEMU exited (${exited.signal ?? `code ${exited.code}`}) before SSH answered${why}`);
        return rec;
      }
      const fatal = fatalConsoleLine(text);
      if (fatal) {
        fail('boot', `the boot failed after ${sec(elapsed)} s: ${fatal}`);
        return rec;
      }
      const graceOver = times.login_prompt !== undefined && elapsed - times.login_prompt * 1000 > sshGraceMs;
      if (graceOver) {
        fail(
          'ssh',
          `SSH did not answer with the injected key as ${c.login}: the login prompt came after ${times.login_prompt} s, ` +
            `and ${sec(sshGraceMs)} s later SSH still failed (${lastSshError})`,
        );
        return rec;
      }
      if (elapsed > bootTimeoutMs) {
        fail(
          times.login_prompt === undefined ? 'boot' : 'ssh',
          times.login_prompt === undefined
            ? `no login prompt and no SSH within ${sec(bootTimeoutMs)} s (last SSH error: ${lastSshError})`
            : `SSH did not answer with the injected key as ${c.login} within ${sec(bootTimeoutMs)} s (login prompt after ${times.login_prompt} s; last error: ${lastSshError})`,
        );
        return rec;
      }
      if (Date.now() >= nextAttempt) {
        try {
          guest = await connectOnce({
            port: spec.sshPort,
            user: c.login,
            privateKey: keys.privateKey,
            readyTimeoutMs: 10_000,
          });
        } catch (err) {
          lastSshError = connectError(err);
          nextAttempt = Date.now() + 1000;
        }
      }
    }
    times.ssh = sec(Date.now() - vm.startedAt);
    checks.push({
      name: 'ssh',
      ok: true,
      detail: `${c.login} logged in with the injected key after ${times.ssh} s`,
    });
    log.info(`boot test: SSH as ${c.login} after ${times.ssh} s`);
    phase('checking');

    // ---- the checks, once the boot has finished: the getty's login prompt comes after the last service of
    // the default runlevel (sshd answers before tiny-cloud's final phase has run the user-data) ----
    while (times.login_prompt === undefined) {
      const text = await serial.poll();
      const elapsed = Date.now() - vm.startedAt;
      if (LOGIN_PROMPT.test(text)) {
        times.login_prompt = sec(elapsed);
        log.info(`boot test: login prompt after ${times.login_prompt} s`);
      } else if (elapsed > bootTimeoutMs || exited) {
        fail('boot', `SSH answered but no login prompt on the serial console within ${sec(bootTimeoutMs)} s`);
        return rec;
      } else {
        await sleep(250);
      }
    }
    const probe = await guest.exec(probeScript(data.markerPath), 120_000);
    const got = sections(probe.stdout);
    const evald = evaluate(got, expectedOf(image, data.hostname, data.markerText, data.markerPath, growMiB));
    checks.push(...evald.checks);
    rec.footprint = { ...evald.footprint, ...rec.footprint };
    if (service) {
      const reqs = service.requests();
      const tokenFlow = reqs.some((r) => r.startsWith('PUT /latest/api/token 200'));
      const keyByToken = reqs.some((r) =>
        /^GET \/latest\/meta-data\/public-keys\/0\/openssh-key 200 \(token\)/.test(r),
      );
      checks.push({
        name: 'metadata-service',
        ok: tokenFlow && keyByToken,
        detail:
          tokenFlow && keyByToken
            ? `the SSH key was read from ${service.name} with a session token (${reqs.length} request(s))`
            : `${service.name} requests: ${reqs.join(', ') || 'none'}`,
      });
    }

    // ---- a clean poweroff: QEMU exits by itself ----
    phase('powering off');
    const offAt = Date.now();
    const off = await guest
      .exec('doas -n /sbin/poweroff 2>&1 || sudo -n /sbin/poweroff 2>&1 || /sbin/poweroff 2>&1', 30_000)
      .catch((err: unknown) => ({ code: null, stdout: '', stderr: String(err) }));
    guest.close();
    guest = undefined;
    // a busy TCG host stretches the shutdown of a full service set to minutes (23 s idle, >90 s at load 15)
    const poweroffTimeoutMs = t.poweroffTimeoutMs ?? (tcg ? 180_000 : 60_000);
    // the limit's timer is cleared once QEMU has exited: it must not keep the process alive for minutes after
    // the last test (./build test and the bench lingered up to 180 s after printing their results)
    let offTimer: NodeJS.Timeout | undefined;
    const done = await Promise.race([
      vm.exited.then(() => true),
      new Promise<boolean>((r) => {
        offTimer = setTimeout(() => r(false), poweroffTimeoutMs);
      }),
    ]);
    clearTimeout(offTimer);
    await serial.poll();
    if (done) {
      times.poweroff = sec(Date.now() - offAt);
      times.total = sec(Date.now() - vm.startedAt);
      const e = exited ?? (await vm.exited);
      const clean = e.code === 0;
      checks.push({
        name: 'poweroff',
        ok: clean,
        detail: clean
          ? `QEMU exited by itself ${times.poweroff} s after poweroff`
          : `QEMU exited with ${e.signal ?? `code ${e.code}`}`,
      });
    } else {
      checks.push({
        name: 'poweroff',
        ok: false,
        detail: `QEMU still ran ${sec(poweroffTimeoutMs)} s after poweroff (${(off.stdout + off.stderr).trim().slice(0, 200) || 'no output'})`,
      });
    }
    const failed = checks.filter((x) => !x.ok && !x.skipped);
    if (failed.length === 0) {
      rec.status = 'passed';
    } else {
      const first = failed[0]!;
      rec.error = `check ${first.name} failed: ${first.detail}${
        failed.length > 1
          ? ` (and ${failed
              .slice(1)
              .map((f) => f.name)
              .join(', ')})`
          : ''
      }`;
      if (first.name === 'poweroff' || first.name === 'services') {
        rec.error += `\n--- serial console, last lines ---\n${serialTail(serial.all)}`;
      }
    }
    return rec;
  } catch (err) {
    if (err instanceof BootSetupError) fail('setup', err.message, false);
    else fail('setup', (err as Error).message ?? String(err), false);
    return rec;
  } finally {
    guest?.close();
    if (vm) {
      await vm.kill();
      ctx.reaper.removeVm(vm.pid);
    }
    await endpoint?.close();
    await removeQuietly(runDir);
    ctx.reaper.removeDir(runDir);
    rec.checks = checks;
    rec.at = now().toISOString();
  }
}

class BootSetupError extends Error {}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
