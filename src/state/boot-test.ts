// What the test step records about one image: ONE field group, `boot_test`, in the image's state and
// metadata. Part of the image model (the state layer reads it back and plans from it; the test step in
// src/boottest writes it). Pure: no I/O here.

/** One named check of the boot test. */
export interface CheckResult {
  /** e.g. "ssh", "hostname", "user-data", "rootfs-size", "packages", "services", "cmdline", "motd", "poweroff" */
  name: string;
  ok: boolean;
  /** what was found (and, when it failed, what was expected) */
  detail: string;
  /** skipped: the check does not apply to this image (the detail says why) */
  skipped?: boolean;
}

/** The image's cost once booted. */
export interface Footprint {
  /** MemTotal - MemAvailable, KiB */
  memory_used_kib?: number;
  rootfs_used_kib?: number;
  rootfs_free_kib?: number;
  /** the tested image file's size on disk, bytes */
  image_bytes?: number;
}

/** Boot timings, in seconds since QEMU started. */
export interface BootTimes {
  /** the login prompt appeared on the serial console */
  login_prompt?: number;
  /** SSH answered with the injected key */
  ssh?: number;
  /** from the poweroff command until QEMU exited by itself */
  poweroff?: number;
  /** the whole test, QEMU start to exit */
  total?: number;
}

export type BootTestStatus = 'passed' | 'failed' | 'skipped';

/** The `boot_test` field group of an image's metadata. */
export interface BootTestRecord {
  status: BootTestStatus;
  /** when the test finished (or was skipped) */
  at: string;
  /** the `built` timestamp of the image that was tested: a rebuild makes the result stale */
  built?: string | null;
  /** skipped: why (e.g. "--disable test") */
  reason?: string;
  /** failed: the first failed check's name and what went wrong, with the serial console's tail */
  error?: string;
  accelerator?: string;
  /** how the guest got its instance data: "nocloud-vfat", "nocloud-iso9660", "aws-imdsv2" */
  datasource?: string;
  times?: BootTimes;
  checks?: CheckResult[];
  footprint?: Footprint;
  /** the serial console log, next to the image (file name in the image's local directory) */
  boot_log?: string;
}

/** A boot_test record read back from metadata, or undefined when it is not one (wrong shape). */
export function readBootTest(v: unknown): BootTestRecord | undefined {
  if (!v || typeof v !== 'object' || Array.isArray(v)) return undefined;
  const r = v as Record<string, unknown>;
  if (r.status !== 'passed' && r.status !== 'failed' && r.status !== 'skipped') return undefined;
  const at = r.at instanceof Date ? r.at.toISOString() : r.at;
  if (typeof at !== 'string' || Number.isNaN(Date.parse(at))) return undefined;
  if (r.checks !== undefined && !Array.isArray(r.checks)) return undefined;
  const built = r.built instanceof Date ? r.built.toISOString() : r.built;
  return { ...(r as unknown as BootTestRecord), at, built: typeof built === 'string' ? built : null };
}

/**
 * Whether the image's latest test result lets it leave the machine: it passed on this very build.
 * Returns undefined when it may, else the reason it may not.
 */
export function testGate(
  rec: BootTestRecord | null | undefined,
  built: string | null | undefined,
): string | undefined {
  if (!rec) return 'it was never boot-tested (run the test step, or --disable test)';
  if (rec.status === 'skipped') return 'its boot test was skipped (--disable test) in an earlier run';
  if (rec.built && built && rec.built !== built) return 'it was rebuilt after its last boot test';
  if (rec.status === 'failed') return `its latest boot test failed: ${firstLine(rec.error ?? 'no reason')}`;
  return undefined;
}

/** The test still has to run for this build: never ran, failed, skipped, or ran on an older build. */
export function needsTest(rec: BootTestRecord | null | undefined, built: string | null | undefined): boolean {
  return testGate(rec, built) !== undefined;
}

function firstLine(s: string): string {
  return s.split('\n')[0] ?? s;
}

/** One line per check, for logs and the demo: "  ok    ssh          answered after 36.8 s". */
export function formatChecks(checks: readonly CheckResult[]): string {
  const w = Math.max(4, ...checks.map((c) => c.name.length));
  return checks
    .map((c) => `  ${(c.skipped ? 'skip' : c.ok ? 'ok' : 'FAIL').padEnd(5)} ${c.name.padEnd(w)}  ${c.detail}`)
    .join('\n');
}
