// npm run demo: a real Alpine build, offline, with the chroot builder.
//
// Builds one x86_64 tiny image (Alpine 3.19, tiny-cloud for NoCloud, BIOS) from the small real Alpine mirror
// ($ALPINE_MIRROR, default ../shared/alpine-mirror) plus the signed stand-in repository (kernel, mkinitfs and
// syslinux made from Debian's packages, signed by a key made here), in a work directory it creates
// ($DEMO_DIR, default a new directory under the system's temp dir), boots it under QEMU until the login
// prompt — through the test step (`./build test`: NoCloud seed, SSH as the login user, each check's result) —
// and prints the image file's path as its last line.
//
// The demo is a list of steps (DEMO_STEPS): each gets the context and may add to it; add a step to show more
// (e.g. checks in the booted image, the SBOMs next to it).
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parse } from 'yaml';
import { type BootTestRecord, formatChecks } from '../src/state/boot-test.js';
import { type ChrootEnv, chrootUnavailable, localArgs, prepareChrootEnv } from '../test/helpers/alpine-image.js';
import { MIRROR_RELEASE, REPO_ROOT } from '../test/helpers/alpine-standin.js';

export interface DemoContext {
  dir: string;
  work: string;
  env?: ChrootEnv;
  /** the built image (qcow2) */
  image?: string;
  localDir?: string;
}

export interface DemoStep {
  title: string;
  run(ctx: DemoContext): Promise<void>;
}

const VARIANT = ['3.19', 'x86_64', 'bios', 'tiny', 'vm', 'nocloud'];
const KEY = `${MIRROR_RELEASE}-x86_64-bios-tiny-vm-nocloud`;
const NAME = `nocloud_alpine-${MIRROR_RELEASE}-x86_64-bios-tiny-r0`;

function say(text: string): void {
  process.stderr.write(`\n=== ${text}\n`);
}

/** ./build with its output on this terminal; resolves with the exit code. */
function build(args: string[]): Promise<number> {
  return new Promise((done) => {
    const child = spawn(join(REPO_ROOT, 'build'), args, { cwd: REPO_ROOT, stdio: ['ignore', 'inherit', 'inherit'] });
    child.on('exit', (code) => done(code ?? 1));
  });
}

export const DEMO_STEPS: DemoStep[] = [
  {
    title: 'stand-in repository and CDN directory (kernel, mkinitfs, syslinux from Debian; signed by a new key)',
    async run(ctx) {
      ctx.env = await prepareChrootEnv(join(ctx.dir, 'env'));
      process.stderr.write(`--cdn-url ${ctx.env.cdnUrl}\n--custom ${ctx.env.overlay}\n`);
    },
  },
  {
    title: `./build local --only ${VARIANT.join(' ')} (chroot builder)`,
    async run(ctx) {
      if (!ctx.env) throw new Error('no environment');
      const code = await build(localArgs(ctx.env, ctx.work, VARIANT));
      if (code !== 0) throw new Error(`./build local failed (exit ${code})`);
      ctx.localDir = join(ctx.work, 'images', 'nocloud', KEY);
      ctx.image = join(ctx.localDir, `${NAME}.qcow2`);
    },
  },
  {
    title: 'supply chain next to the image: SBOMs, root filesystem manifest, provenance (docs/supply-chain.md)',
    async run(ctx) {
      if (!ctx.localDir) throw new Error('no image');
      const meta = parse(await readFile(join(ctx.localDir, `${NAME}.yaml`), 'utf8')) as {
        supply?: { content_digest: string; packages: number; files: Record<string, string> };
      };
      if (!meta.supply) throw new Error('the build recorded no supply chain');
      for (const [kind, file] of Object.entries(meta.supply.files)) {
        const bytes = (await stat(join(ctx.localDir, file))).size;
        process.stderr.write(`  ${kind.padEnd(10)} ${join(ctx.localDir, file)} (${bytes} bytes)\n`);
      }
      process.stderr.write(`  ${meta.supply.packages} packages, content digest ${meta.supply.content_digest}\n`);
    },
  },
  {
    title: `./build test --only ${VARIANT.join(' ')} (boot under QEMU with a NoCloud seed, checks over SSH)`,
    async run(ctx) {
      if (!ctx.env || !ctx.localDir) throw new Error('no image');
      const args = localArgs(ctx.env, ctx.work, VARIANT);
      args[0] = 'test';
      const code = await build(args);
      // each check's result, from the image's metadata (the test step records them there)
      const meta = parse(await readFile(join(ctx.localDir, `${NAME}.yaml`), 'utf8')) as { boot_test?: BootTestRecord };
      const rec = meta.boot_test;
      if (rec) {
        const t = rec.times ?? {};
        process.stderr.write(
          `boot test ${rec.status}: login prompt after ${t.login_prompt ?? '-'} s, SSH after ${t.ssh ?? '-'} s, ` +
            `powered off in ${t.poweroff ?? '-'} s (boot log ${join(ctx.localDir, rec.boot_log ?? '')})\n` +
            `${formatChecks(rec.checks ?? [])}\n`,
        );
      }
      if (code !== 0) throw new Error(`./build test failed (exit ${code})`);
    },
  },
];

async function main(): Promise<void> {
  const why = await chrootUnavailable('x86_64', 'bios');
  if (why) {
    process.stderr.write(`demo: cannot run here: ${why}\n`);
    process.exit(2);
  }
  const dir = process.env.DEMO_DIR ? resolve(process.env.DEMO_DIR) : await mkdtemp(join(tmpdir(), 'cib-demo-'));
  await mkdir(dir, { recursive: true });
  const ctx: DemoContext = { dir, work: join(dir, 'work') };
  say(`work directory ${dir}`);
  for (const step of DEMO_STEPS) {
    say(step.title);
    await step.run(ctx);
  }
  say('done: the image');
  process.stdout.write(`${ctx.image}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`demo: ${(err as Error).message}\n`);
  process.exit(1);
});
