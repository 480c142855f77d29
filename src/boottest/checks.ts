// The checks run over SSH as the login user: one shell script gathers everything (each command under TCG costs
// time), and pure functions here turn its sections into named results.
import type { CheckResult, Footprint } from '../state/boot-test.js';
import type { InstanceData } from './seed.js';

/** What the variant was configured with, as far as the checks are concerned. */
export interface Expected {
  hostname: string;
  marker: InstanceData['markerText'];
  markerPath: string;
  /** packages.add + packages.noscripts (apk specs, name or name@tag) */
  packagesAdd: string[];
  packagesDel: string[];
  /** runlevel -> services enabled there by the config */
  services: Record<string, string[]>;
  kernelOptions: string[];
  motd: string;
  /** how much larger the test disk is than the image (MiB): a root file system that grows takes it */
  grownMiB: number;
}

/** dpkg-query's format for one package name per line (the stand-in test images are Debian-based) */
const DPKG_FORMAT = ['$', '{Package}\\n'].join('');

/** The probe script: prints `@@section` headers, each followed by that section's output. */
export function probeScript(markerPath: string): string {
  return [
    'export LC_ALL=C PATH=/usr/sbin:/usr/bin:/sbin:/bin',
    'echo @@hostname; hostname',
    `echo @@marker; cat '${markerPath}' 2>&1`,
    'echo @@cmdline; cat /proc/cmdline',
    'echo @@motd; cat /etc/motd 2>&1',
    'echo @@df; df -Pk / | tail -n 1',
    // root block device: its size, and (when a partition) its disk's size and its start, in 512-byte sectors
    'echo @@disk; mm=$(mountpoint -d / 2>/dev/null); b=/sys/dev/block/$mm;' +
      ' if [ -f "$b/partition" ]; then echo "$(cat $b/../size) $(cat $b/start) $(cat $b/size)";' +
      ' else s=$(cat $b/size 2>/dev/null); echo "$s 0 $s"; fi',
    'echo @@meminfo; grep -E "^(MemTotal|MemAvailable):" /proc/meminfo',
    'echo @@packages; if command -v apk >/dev/null; then apk info 2>/dev/null; ' +
      `elif command -v dpkg-query >/dev/null; then dpkg-query -W -f '${DPKG_FORMAT}'; fi`,
    'echo @@runlevels; for l in sysinit boot default; do [ -d /etc/runlevels/$l ] && echo "$l: $(ls /etc/runlevels/$l | tr "\\n" " ")"; done',
    'echo @@rcstatus; if command -v rc-status >/dev/null; then rc-status -a -f ini 2>/dev/null || rc-status -a 2>/dev/null; else echo "no OpenRC"; fi',
    'echo @@end',
  ].join('\n');
}

export function sections(output: string): Record<string, string> {
  const out: Record<string, string> = {};
  let cur: string | undefined;
  let buf: string[] = [];
  for (const line of output.split('\n')) {
    const m = /^@@([a-z]+)$/.exec(line.trim());
    if (m) {
      if (cur) out[cur] = buf.join('\n').trim();
      cur = m[1];
      buf = [];
    } else if (cur) {
      buf.push(line);
    }
  }
  if (cur && cur !== 'end') out[cur] = buf.join('\n').trim();
  return out;
}

function result(name: string, ok: boolean, detail: string): CheckResult {
  return { name, ok, detail };
}

/** Strip an apk tag (pkg@tag) or a version constraint (pkg>=1.2). */
export function packageName(spec: string): string {
  return spec.split('@')[0]!.split(/[<>=~]/)[0]!;
}

/** Service state per name from `rc-status -a -f ini` ("[ level ]" then "svc = started") or the plain format. */
export function parseRcStatus(text: string): Map<string, string> {
  const states = new Map<string, string>();
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    let m = /^([\w.@-]+)\s*=\s*(\w+)/.exec(line);
    if (!m) m = /^([\w.@-]+)\s+\[\s*(\w+)[^\]]*\]/.exec(line);
    if (m) {
      const [, name, state] = m;
      // a service listed in several runlevels: any non-started state wins
      if (!states.has(name!) || state !== 'started') states.set(name!, state!);
    }
  }
  return states;
}

/** The checks after SSH answered (pure: from the probe's sections and what was expected). */
export function evaluate(
  s: Record<string, string>,
  exp: Expected,
): { checks: CheckResult[]; footprint: Footprint } {
  const checks: CheckResult[] = [];
  const hostname = (s.hostname ?? '').trim();
  checks.push(
    result(
      'hostname',
      hostname === exp.hostname,
      hostname === exp.hostname
        ? `${hostname} (from the instance data)`
        : `got "${hostname}", expected "${exp.hostname}" from the instance data`,
    ),
  );
  const marker = (s.marker ?? '').trim();
  checks.push(
    result(
      'user-data',
      marker === exp.marker,
      marker === exp.marker
        ? `the user-data script left ${exp.markerPath}`
        : `${exp.markerPath}: ${marker.split('\n')[0] || 'empty'} (the user-data script did not run)`,
    ),
  );

  // root file system as large as its disk: the partition runs to the disk's end, the file system fills it
  const [diskS, startS, partS] = (s.disk ?? '').split(/\s+/).map(Number);
  const df = (s.df ?? '').split(/\s+/);
  const fsKiB = Number(df[1]);
  const usedKiB = Number(df[2]);
  const freeKiB = Number(df[3]);
  if (diskS && partS !== undefined && Number.isFinite(fsKiB)) {
    const diskMiB = (diskS * 512) / 2 ** 20;
    const partEnd = ((startS ?? 0) + partS) * 512;
    // GPT keeps 33 sectors at the end, partitions are MiB-aligned: 2 MiB of slack. df leaves out ext4's own
    // overhead (journal, inode tables: up to ~13% of a small file system); the test disk is at least a quarter
    // larger than the image (growthMiB), so a file system that did not grow stays well below 85%
    const partOk = diskS * 512 - partEnd <= 2 * 2 ** 20;
    const fsOk = fsKiB * 1024 >= partS * 512 * 0.85;
    const grown = exp.grownMiB > 0 ? ` (the test disk is ${exp.grownMiB} MiB larger than the image)` : '';
    checks.push(
      result(
        'rootfs-size',
        partOk && fsOk,
        `root file system ${(fsKiB / 1024).toFixed(0)} MiB on a ${diskMiB.toFixed(0)} MiB disk${grown}` +
          (partOk
            ? ''
            : `; its partition ends ${((diskS * 512 - partEnd) / 2 ** 20).toFixed(0)} MiB before the disk's end`) +
          (fsOk ? '' : '; the file system does not fill its partition'),
      ),
    );
  } else {
    checks.push(
      result(
        'rootfs-size',
        false,
        `cannot read the root device's size from /sys (is sysfs mounted?): ${s.disk || 'no output'}`,
      ),
    );
  }

  const installed = new Set((s.packages ?? '').split(/\s+/).filter(Boolean));
  if (installed.size === 0) {
    checks.push(result('packages', false, 'cannot list the installed packages (no apk or dpkg-query)'));
  } else {
    const missing = exp.packagesAdd.map(packageName).filter((p) => !installed.has(p));
    const present = exp.packagesDel.map(packageName).filter((p) => installed.has(p));
    const ok = missing.length === 0 && present.length === 0;
    checks.push(
      result(
        'packages',
        ok,
        ok
          ? `${exp.packagesAdd.length} configured package(s) installed, ${exp.packagesDel.length} removed one(s) absent`
          : [
              missing.length ? `not installed: ${missing.join(' ')}` : '',
              present.length ? `installed although removed: ${present.join(' ')}` : '',
            ]
              .filter(Boolean)
              .join('; '),
      ),
    );
  }

  const rc = s.rcstatus ?? '';
  if (/^no OpenRC/.test(rc)) {
    checks.push({ name: 'services', ok: true, skipped: true, detail: 'no OpenRC in this image' });
  } else {
    const states = parseRcStatus(rc);
    const problems: string[] = [];
    let expected = 0;
    for (const [level, names] of Object.entries(exp.services)) {
      if (level === 'shutdown' || level === 'nonetwork') continue;
      for (const n of names) {
        expected++;
        const st = states.get(n);
        if (st !== 'started') problems.push(`${n} (${level}) ${st ?? 'not in any runlevel'}`);
      }
    }
    for (const [n, st] of states) {
      if ((st === 'crashed' || st === 'failed') && !problems.some((p) => p.startsWith(`${n} `))) {
        problems.push(`${n} ${st}`);
      }
    }
    checks.push(
      result(
        'services',
        problems.length === 0,
        problems.length === 0
          ? `${expected} configured service(s) started, none crashed`
          : `not started or crashed: ${problems.join(', ')}`,
      ),
    );
  }

  const cmdline = (s.cmdline ?? '').split(/\s+/);
  const missingOpts = exp.kernelOptions.filter((o) => !cmdline.includes(o));
  checks.push(
    result(
      'cmdline',
      missingOpts.length === 0,
      missingOpts.length === 0
        ? `${exp.kernelOptions.length} kernel option(s) present`
        : `missing from /proc/cmdline: ${missingOpts.join(' ')} (it is: ${(s.cmdline ?? '').trim()})`,
    ),
  );

  const motd = s.motd ?? '';
  const wanted = exp.motd
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  const absent = wanted.filter((l) => !motd.includes(l));
  checks.push(
    result(
      'motd',
      absent.length === 0,
      absent.length === 0
        ? `/etc/motd has the configured ${wanted.length} line(s)`
        : `/etc/motd lacks: ${absent[0]}`,
    ),
  );

  const mem = /MemTotal:\s+(\d+)[\s\S]*MemAvailable:\s+(\d+)/.exec(s.meminfo ?? '');
  const footprint: Footprint = {};
  if (mem) footprint.memory_used_kib = Number(mem[1]) - Number(mem[2]);
  if (Number.isFinite(usedKiB)) footprint.rootfs_used_kib = usedKiB;
  if (Number.isFinite(freeKiB)) footprint.rootfs_free_kib = freeKiB;
  return { checks, footprint };
}
