// The installed-package database of an Alpine root (/lib/apk/db/installed), as apk-tools 2 writes it: one block
// per package, blank-line separated, one "X:value" line per field. The fields used here:
//   C checksum of the package's control stream ("Q1" + base64 SHA-1), P name, V version, A arch, S size,
//   I installed size, T description, U url, L license, o origin, m maintainer, t build time (unix seconds),
//   c aports commit, D dependencies, p provides, i install_if, r replaces, F directory, R file (in the last F).
import { PackageURL } from 'packageurl-js';
import { UserError } from '../util/errors.js';

export interface ApkPackage {
  name: string;
  version: string;
  arch: string;
  /** "Q1<base64 sha1>" of the control stream, as in the repository index */
  checksum: string;
  size?: number;
  installedSize?: number;
  description?: string;
  url?: string;
  license?: string;
  origin?: string;
  maintainer?: string;
  /** unix seconds */
  buildTime?: number;
  commit?: string;
  /** dependency atoms as written: "name", "so:libc.musl-x86_64.so.1", "/bin/sh", "name>=1", "!conflict" */
  depends: string[];
  provides: string[];
  installIf: string[];
  /** files owned by the package, without a leading slash */
  files: string[];
}

const INT = (v: string) => (/^\d+$/.test(v) ? Number(v) : undefined);

/** Parse the text of /lib/apk/db/installed. `what` names the file in errors. */
export function parseInstalledDb(text: string, what = 'lib/apk/db/installed'): ApkPackage[] {
  const out: ApkPackage[] = [];
  let cur: ApkPackage | undefined;
  let dir = '';
  let lineNo = 0;
  const finish = () => {
    if (!cur) return;
    if (!cur.name || !cur.version) {
      throw new UserError(`${what}: package block ending at line ${lineNo} has no P: or V: field`);
    }
    out.push(cur);
    cur = undefined;
    dir = '';
  };
  for (const line of text.split('\n')) {
    lineNo++;
    if (line.trim() === '') {
      finish();
      continue;
    }
    if (line[1] !== ':')
      throw new UserError(`${what}:${lineNo}: expected "X:value", got ${JSON.stringify(line)}`);
    const k = line[0]!;
    const v = line.slice(2);
    cur ??= {
      name: '',
      version: '',
      arch: '',
      checksum: '',
      depends: [],
      provides: [],
      installIf: [],
      files: [],
    };
    switch (k) {
      case 'P':
        cur.name = v;
        break;
      case 'V':
        cur.version = v;
        break;
      case 'A':
        cur.arch = v;
        break;
      case 'C':
        cur.checksum = v;
        break;
      case 'S':
        cur.size = INT(v);
        break;
      case 'I':
        cur.installedSize = INT(v);
        break;
      case 'T':
        cur.description = v;
        break;
      case 'U':
        cur.url = v;
        break;
      case 'L':
        cur.license = v;
        break;
      case 'o':
        cur.origin = v;
        break;
      case 'm':
        cur.maintainer = v;
        break;
      case 't':
        cur.buildTime = INT(v);
        break;
      case 'c':
        cur.commit = v;
        break;
      case 'D':
        cur.depends.push(...v.split(/\s+/).filter(Boolean));
        break;
      case 'p':
        cur.provides.push(...v.split(/\s+/).filter(Boolean));
        break;
      case 'i':
        cur.installIf.push(...v.split(/\s+/).filter(Boolean));
        break;
      case 'F':
        dir = v;
        break;
      case 'R':
        cur.files.push(dir ? `${dir}/${v}` : v);
        break;
      default:
        // acl, file checksums, priorities, replaces: not needed for an SBOM
        break;
    }
  }
  finish();
  return out;
}

/** The name of a dependency atom: "so:libz.so.1=1.3" -> "so:libz.so.1", "!foo" -> undefined (a conflict). */
export function atomName(atom: string): string | undefined {
  if (atom.startsWith('!')) return undefined;
  return atom.split(/[<>=~]/, 1)[0] || undefined;
}

/**
 * Which installed packages each package depends on, by name: atoms are resolved through package names,
 * `provides` (so:, cmd:, pc:, virtual names) and, for paths such as /bin/sh, the package owning the file.
 * Atoms nothing installed satisfies are left out (apk would not have installed the package otherwise, except for
 * conflicts and packages removed with --force). Sorted, without self-dependencies.
 */
export function resolveDependencies(pkgs: readonly ApkPackage[]): Map<string, string[]> {
  const byName = new Map<string, string>();
  for (const p of pkgs) byName.set(p.name, p.name);
  for (const p of pkgs) {
    for (const prov of p.provides) {
      const n = atomName(prov);
      if (n && !byName.has(n)) byName.set(n, p.name);
    }
  }
  const owner = new Map<string, string>();
  for (const p of pkgs) for (const f of p.files) owner.set(f, p.name);
  const out = new Map<string, string[]>();
  for (const p of pkgs) {
    const deps = new Set<string>();
    for (const atom of p.depends) {
      const n = atomName(atom);
      if (!n) continue;
      const target = n.startsWith('/') ? owner.get(n.slice(1)) : byName.get(n);
      if (target && target !== p.name) deps.add(target);
    }
    out.set(p.name, [...deps].sort());
  }
  return out;
}

/** "Q1<base64>" -> hex SHA-1 (undefined for any other form). */
export function checksumHex(checksum: string): { algorithm: 'SHA1'; hex: string } | undefined {
  if (!checksum.startsWith('Q1')) return undefined;
  const raw = Buffer.from(checksum.slice(2), 'base64');
  return raw.length === 20 ? { algorithm: 'SHA1', hex: raw.toString('hex') } : undefined;
}

/** "Natanael Copa <ncopa@alpinelinux.org>" -> name and email. */
export function splitMaintainer(m: string | undefined): { name: string; email?: string } | undefined {
  if (!m?.trim()) return undefined;
  const r = /^(.*?)\s*<([^>]+)>\s*$/.exec(m.trim());
  return r ? { name: r[1]!.trim() || r[2]!, email: r[2]! } : { name: m.trim() };
}

/** The package URL of an Alpine package: pkg:apk/alpine/<name>@<version>?arch=<arch>&distro=alpine-<release>. */
export function apkPurl(p: Pick<ApkPackage, 'name' | 'version' | 'arch'>, release: string): string {
  return new PackageURL('apk', 'alpine', p.name, p.version, {
    arch: p.arch,
    distro: `alpine-${release}`,
  }).toString();
}
