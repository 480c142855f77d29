import { createHmac } from 'node:crypto';

/**
 * The small part of OpenSSH's client configuration that ssh:// storage honours, so a release engineer's
 * ~/.ssh/config aliases and keys work as they do with `ssh`: Host blocks (patterns, `!` negation) with
 * HostName, User, Port, IdentityFile, IdentitiesOnly, UserKnownHostsFile, StrictHostKeyChecking and
 * ConnectTimeout, ProxyJump and ProxyCommand. As in ssh, the first value found for a key wins. Match blocks and
 * Include are not supported (their options are ignored). This parser is the fallback for machines without
 * OpenSSH's `ssh`; with it, `ssh -G` resolves the configuration (ssh-route.ts).
 */
export interface SshHostConfig {
  hostName?: string;
  user?: string;
  port?: number;
  identityFiles: string[];
  identitiesOnly?: boolean;
  userKnownHostsFiles?: string[];
  strictHostKeyChecking?: string;
  connectTimeoutSec?: number;
  /** ProxyJump as written: comma-separated `[user@]host[:port]` hops */
  proxyJump?: string;
  /** ProxyCommand with its %-tokens unexpanded */
  proxyCommand?: string;
}

interface Block {
  /** null for Match blocks, which never apply */
  patterns: string[] | null;
  options: Array<[string, string[]]>;
}

function tokenize(line: string): string[] {
  const out: string[] = [];
  const re = /"([^"]*)"|(\S+)/g;
  for (let m = re.exec(line); m; m = re.exec(line)) out.push(m[1] ?? m[2]!);
  return out;
}

export function parseSshConfig(text: string): Block[] {
  const blocks: Block[] = [{ patterns: ['*'], options: [] }];
  for (const rawLine of text.split(/\r?\n/)) {
    const line = rawLine.trim();
    if (line === '' || line.startsWith('#')) continue;
    const m = /^(\S+?)(?:\s*=\s*|\s+)(.*)$/.exec(line);
    if (!m) continue;
    const key = m[1]!.toLowerCase();
    const args = tokenize(m[2]!);
    if (key === 'host') blocks.push({ patterns: args, options: [] });
    else if (key === 'match') blocks.push({ patterns: null, options: [] });
    // ProxyCommand is a shell command line: kept as written (sh parses its quotes)
    else blocks[blocks.length - 1]!.options.push([key, key === 'proxycommand' ? [m[2]!] : args]);
  }
  return blocks;
}

/** OpenSSH pattern: `*` and `?` wildcards, case-insensitive. */
export function matchPattern(pattern: string, value: string): boolean {
  const re = pattern
    .split('')
    .map((c) => (c === '*' ? '.*' : c === '?' ? '.' : c.replace(/[\\^$.|+()[\]{}/-]/g, '\\$&')))
    .join('');
  return new RegExp(`^${re}$`, 'is').test(value);
}

/** A comma/space-separated pattern list with `!` negations: any negated match vetoes. */
export function matchPatternList(patterns: readonly string[], value: string): boolean {
  let matched = false;
  for (const p of patterns) {
    if (p.startsWith('!')) {
      if (matchPattern(p.slice(1), value)) return false;
    } else if (matchPattern(p, value)) matched = true;
  }
  return matched;
}

function yesNo(v: string | undefined): boolean | undefined {
  if (v === undefined) return undefined;
  return /^(yes|true)$/i.test(v);
}

/** Options applying to `host` (the name as written in the URL). */
export function resolveSshConfig(blocks: readonly Block[], host: string): SshHostConfig {
  const cfg: SshHostConfig = { identityFiles: [] };
  const seen = new Set<string>();
  for (const b of blocks) {
    if (
      !b.patterns ||
      !matchPatternList(
        b.patterns.flatMap((p) => p.split(',')),
        host,
      )
    )
      continue;
    for (const [key, args] of b.options) {
      if (args[0] === undefined) continue;
      // the first value obtained wins, as in ssh; IdentityFile accumulates
      if (key !== 'identityfile') {
        if (seen.has(key)) continue;
        seen.add(key);
      }
      applySshOption(cfg, key, args);
    }
  }
  return cfg;
}

/** One option's value into the host settings: the built-in parser and `ssh -G`'s output (ssh-route.ts) share it. */
export function applySshOption(cfg: SshHostConfig, key: string, args: readonly string[]): void {
  const v = args[0];
  if (v === undefined) return;
  switch (key) {
    case 'hostname':
      cfg.hostName = v;
      break;
    case 'user':
      cfg.user = v;
      break;
    case 'port':
      if (/^\d+$/.test(v)) cfg.port = Number(v);
      break;
    case 'identityfile':
      cfg.identityFiles.push(v);
      break;
    case 'identitiesonly':
      cfg.identitiesOnly = yesNo(v);
      break;
    case 'userknownhostsfile':
      cfg.userKnownHostsFiles = [...args];
      break;
    case 'stricthostkeychecking':
      // ssh -G prints yes/no as true/false
      cfg.strictHostKeyChecking = v === 'true' ? 'yes' : v === 'false' ? 'no' : v.toLowerCase();
      break;
    case 'connecttimeout':
      if (/^\d+$/.test(v)) cfg.connectTimeoutSec = Number(v);
      break;
    case 'proxyjump':
      if (v.toLowerCase() !== 'none') cfg.proxyJump = args.join(' ');
      break;
    case 'proxycommand':
      if (v.toLowerCase() !== 'none') cfg.proxyCommand = v;
      break;
  }
}

/** Expand `~` and the %-tokens ssh allows in IdentityFile / UserKnownHostsFile. */
export function expandPath(
  path: string,
  vars: { home: string; localUser: string; host: string; remoteUser: string; port: number },
): string {
  const p = path.replace(/^~(?=\/|$)/, vars.home);
  return p.replace(/%([%dhunrp])/g, (_w, t: string) => {
    switch (t) {
      case '%':
        return '%';
      case 'd':
        return vars.home;
      case 'h':
        return vars.host;
      case 'u':
        return vars.localUser;
      case 'r':
        return vars.remoteUser;
      case 'p':
        return String(vars.port);
      default:
        return '';
    }
  });
}

// ---------------------------------------------------------------------------------------------------------
// known_hosts

export interface KnownHostEntry {
  marker?: 'revoked' | 'cert-authority';
  /** the host field: comma-separated patterns or a hashed `|1|salt|hash` */
  hosts: string;
  keyType: string;
  key: Buffer;
}

export function parseKnownHosts(text: string): KnownHostEntry[] {
  const out: KnownHostEntry[] = [];
  for (const rawLine of text.split(/\r?\n/)) {
    const line = rawLine.trim();
    if (line === '' || line.startsWith('#')) continue;
    const parts = line.split(/\s+/);
    let marker: KnownHostEntry['marker'];
    if (parts[0] === '@revoked' || parts[0] === '@cert-authority') {
      marker = parts[0].slice(1) as KnownHostEntry['marker'];
      parts.shift();
    }
    const [hosts, keyType, b64] = parts;
    if (!hosts || !keyType || !b64) continue;
    const entry: KnownHostEntry = { hosts, keyType, key: Buffer.from(b64, 'base64') };
    if (marker) entry.marker = marker;
    out.push(entry);
  }
  return out;
}

/** The name ssh looks up: `host` on port 22, `[host]:port` otherwise. */
export function knownHostName(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

export function hostFieldMatches(field: string, name: string): boolean {
  if (field.startsWith('|1|')) {
    const [, , salt, hash] = field.split('|');
    if (!salt || !hash) return false;
    const mac = createHmac('sha1', Buffer.from(salt, 'base64')).update(name).digest('base64');
    return mac === hash;
  }
  return matchPatternList(field.split(','), name);
}

/** The key type named inside an SSH public key blob (its first string). */
export function keyBlobType(blob: Buffer): string {
  if (blob.length < 4) return '';
  const len = blob.readUInt32BE(0);
  return blob.subarray(4, 4 + len).toString('latin1');
}

export type HostKeyVerdict = 'match' | 'unknown' | 'mismatch' | 'revoked';

export function checkHostKey(entries: readonly KnownHostEntry[], name: string, blob: Buffer): HostKeyVerdict {
  let known = false;
  for (const e of entries) {
    if (e.marker === 'revoked' && e.key.equals(blob)) return 'revoked';
  }
  for (const e of entries) {
    if (e.marker || !hostFieldMatches(e.hosts, name)) continue;
    if (e.key.equals(blob)) return 'match';
    known = true;
  }
  return known ? 'mismatch' : 'unknown';
}

/** Host key algorithms ssh2 offers, reordered so that the types already known for this host come first. */
export function hostKeyAlgorithms(entries: readonly KnownHostEntry[], name: string): string[] {
  const all = [
    'ssh-ed25519',
    'ecdsa-sha2-nistp256',
    'ecdsa-sha2-nistp384',
    'ecdsa-sha2-nistp521',
    'rsa-sha2-512',
    'rsa-sha2-256',
    'ssh-rsa',
  ];
  const knownTypes = new Set(
    entries.filter((e) => !e.marker && hostFieldMatches(e.hosts, name)).map((e) => e.keyType),
  );
  const isKnown = (alg: string) =>
    knownTypes.has(alg) || (alg.startsWith('rsa-sha2-') && knownTypes.has('ssh-rsa'));
  return [...all.filter(isKnown), ...all.filter((a) => !isKnown(a))];
}
