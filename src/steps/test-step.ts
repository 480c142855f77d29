// The `test` step (between local and upload): boot every built image and check it (src/boottest), record the
// result in its metadata; and the gate that keeps upload, import and publish from taking an image whose latest
// test failed or never ran, unless the test is disabled for the run.
import { cpus } from 'node:os';
import { join } from 'node:path';
import pLimit from 'p-limit';
import type { BootTestTuning } from '../boottest/run.js';
import type { AccelChoice } from '../local/accel.js';
import type { TestState } from '../local/progress.js';
import { type BootTestRecord, formatChecks, testGate } from '../state/boot-test.js';
import type { Image } from '../state/image.js';
import { stateAfter } from '../state/image-state.js';
import { errorMessage, UserError } from '../util/errors.js';
import type { RunContext, StepFailure } from './context.js';
import { saveMetadata } from './persist.js';

/** The environment variable that sets the boot test's time limit (seconds from QEMU's start to SSH). */
export const TEST_TIMEOUT_ENV = 'BUILD_TEST_TIMEOUT';

function testDisabled(ctx: RunContext): boolean {
  return (ctx.options.disable as readonly string[]).includes('test');
}

/**
 * Throws when `step` may not take the image: its latest test failed or never ran. With `--disable test` it may,
 * and the image's record says the test was skipped (the caller saves the metadata), with a warning.
 */
export function requireTested(image: Image, step: string, ctx: RunContext): void {
  const s = image.state;
  const rec = s.boot_test;
  const why = testGate(rec, s.built);
  if (!why) return;
  if (!testDisabled(ctx)) throw new UserError(`${step} refused for ${image.imageName}: ${why}`);
  if (rec?.status === 'skipped' && rec.built === s.built) return;
  image.record(
    stateAfter.tested(s, {
      status: 'skipped',
      at: ctx.now().toISOString(),
      built: s.built,
      reason: '--disable test',
    }),
  );
  ctx.log.warn(
    { image: image.imageName },
    `${step}: ${image.imageName} was NOT boot-tested (--disable test); its metadata records the skip`,
  );
}

function tuningFrom(env: NodeJS.ProcessEnv): BootTestTuning {
  const v = env[TEST_TIMEOUT_ENV];
  if (v === undefined || v === '') return {};
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) {
    throw new UserError(`${TEST_TIMEOUT_ENV}=${v}: expected a number of seconds`);
  }
  return { bootTimeoutMs: n * 1000 };
}

/** Boot-test the images (at most --parallel at once). A failed test fails the image, not the run. */
export async function stepTest(images: readonly Image[], ctx: RunContext): Promise<StepFailure[]> {
  const { testImage, Reaper, sweepStale } = await import('../boottest/run.js');
  const { probeAccelerator } = await import('../local/accel.js');
  const { acceleratorFromVarFiles } = await import('../local/variant.js');
  const { ensureUefiFirmware } = await import('../local/firmware.js');
  const { loadApkKeys } = await import('../local/apk.js');
  const { log, options } = ctx;
  const tuning = tuningFrom(process.env);
  await sweepStale(options.workDir, log);

  const forced = await acceleratorFromVarFiles(options.vars);
  const accels = new Map<string, Promise<AccelChoice>>();
  const accelerator = (arch: string) => {
    let p = accels.get(arch);
    if (!p) {
      p = (async () => {
        const c: AccelChoice = forced
          ? { accelerator: forced.value, reason: `set in --vars ${forced.file}` }
          : await probeAccelerator({ arch, timeoutMs: 5000 });
        log.info(`accelerator for ${arch} boot tests: ${c.accelerator.toUpperCase()} (${c.reason})`);
        return c;
      })();
      accels.set(arch, p);
    }
    return p;
  };
  const firmwares = new Map<string, Promise<string>>();
  const firmware = (image: Image) => {
    const arch = image.config.arch;
    let p = firmwares.get(arch);
    if (!p) {
      p = (async () =>
        ensureUefiFirmware(arch, {
          workDir: options.workDir,
          cdnUrl: options.cdnUrl,
          vVersion: image.vVersion,
          pad: options.padUefiBinArch.includes(arch),
          log,
          apkKeys: await loadApkKeys([join(options.rootDir, 'keys', 'apk')]),
        }))();
      firmwares.set(arch, p);
    }
    return p;
  };

  // on a terminal, a live status line per image (its phase and time); elsewhere the plain lines below
  const { Progress } = await import('../local/progress.js');
  const progress = new Progress<TestState>(
    images.map((i) => i.imageName),
    log,
    undefined,
    undefined,
    true,
  );
  if (progress.isLive) progress.startTicker(0);
  const reaper = new Reaper();
  reaper.install();
  const limit = pLimit(Math.max(1, options.parallel));
  const failures: StepFailure[] = [];
  let done = 0;
  try {
    await Promise.all(
      images.map((image) =>
        limit(async () => {
          ctx.log.info({ step: 'test', image: image.imageName }, `test: ${image.imageName} booting`);
          progress.set(image.imageName, 'preparing');
          let rec: BootTestRecord;
          try {
            const { ensureLocalImage } = await import('./image-steps.js');
            await ensureLocalImage(image, ctx);
            rec = await testImage(image, {
              log,
              workDir: options.workDir,
              accelerator,
              firmware,
              cloud: ctx.cloud,
              reaper,
              // the host's cores shared by the parallel tests, 1 or 2 vCPUs each (more does not speed up TCG boots)
              tuning: {
                cpus: Math.max(1, Math.min(2, Math.floor(cpus().length / options.parallel))),
                ...tuning,
              },
              now: ctx.now,
              onPhase: (p, detail) => progress.set(image.imageName, p, detail),
            });
          } catch (err) {
            rec = {
              status: 'failed',
              at: ctx.now().toISOString(),
              built: image.state.built,
              error: errorMessage(err),
              checks: [],
            };
          }
          progress.set(image.imageName, rec.status === 'passed' ? 'passed' : 'failed');
          image.record(stateAfter.tested(image.state, rec));
          await saveMetadata(image, ctx);
          done++;
          const checks = rec.checks?.length ? `\n${formatChecks(rec.checks)}` : '';
          const t = rec.times ?? {};
          if (rec.status === 'passed') {
            log.info(
              { step: 'test', image: image.imageName, times: t, footprint: rec.footprint },
              `test: ${image.imageName} passed (${done}/${images.length}): SSH after ${t.ssh} s, ` +
                `login prompt after ${t.login_prompt} s, powered off in ${t.poweroff} s${checks}`,
            );
          } else {
            const bootLog = rec.boot_log ? join(image.localDir, rec.boot_log) : undefined;
            // the whole story (each check, the serial console's last lines) in the log; one line in the table
            log.error(
              { step: 'test', image: image.imageName, bootLog },
              `test: ${image.imageName} failed (${done}/${images.length}): ${rec.error ?? 'failed'}${checks}` +
                (bootLog ? `\nboot log: ${bootLog}` : ''),
            );
            failures.push({
              configKey: image.config.config_key,
              imageName: image.imageName,
              step: 'test',
              error:
                `${(rec.error ?? 'failed').split('\n')[0]} (upload, import and publish refuse it until a test passes` +
                `${bootLog ? `; boot log ${bootLog}` : ''})`,
            });
          }
        }),
      ),
    );
  } finally {
    progress.stop();
    reaper.uninstall();
  }
  return failures;
}
