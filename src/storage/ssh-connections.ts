/**
 * ssh connections: one per user@host:port per run, opened on first use, with its SFTP channel, host key
 * checks and authentication like the ssh client. The Storage on top of them is ./ssh.ts.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { appendFile, mkdir, readFile } from 'node:fs/promises';
import { homedir, userInfo } from 'node:os';
import { dirname } from 'node:path';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import type { AnyAuthMethod, ParsedKey, SFTPWrapper } from 'ssh2';
import ssh2 from 'ssh2';
import { errorMessage, UserError } from '../util/errors.js';
import {
  checkHostKey,
  expandPath,
  hostKeyAlgorithms,
  type KnownHostEntry,
  keyBlobType,
  knownHostName,
  parseKnownHosts,
  parseSshConfig,
  resolveSshConfig,
  type SshHostConfig,
} from './ssh-config.js';
import {
  expandProxyCommand,
  findProgram,
  parseJumpHop,
  proxyCommandSocket,
  resolveWithSsh,
} from './ssh-route.js';
import type { SshLocation } from './url.js';

const { Client, utils } = ssh2;
type SshClient = InstanceType<typeof Client>;

/** SFTP status codes (draft-ietf-secsh-filexfer-02) */
export const SFTP_NO_SUCH_FILE = 2;

const DEFAULT_IDENTITIES = ['id_ed25519', 'id_ecdsa', 'id_rsa'];
const DEFAULT_CONNECT_TIMEOUT_SEC = 15;
/** ProxyJump chains longer than this are taken for a loop in the configuration */
const MAX_JUMPS = 8;

type StrictMode = 'yes' | 'accept-new' | 'no';

/** One open connection with its SFTP channel, shared by every Storage on that user@host:port. */
export interface Session {
  readonly key: string;
  readonly client: SshClient;
  readonly sftp: SFTPWrapper;
  /** directories known to exist (or being created), so `mkdir -p` runs once per directory per run */
  readonly dirs: Map<string, Promise<void>>;
  /** false once the connection or its SFTP channel has closed */
  alive: boolean;
  /** rejecters of the requests in flight, called when the session dies */
  readonly pending: Set<(err: Error) => void>;
}

interface Target {
  /** user@host:port */
  key: string;
  host: string;
  port: number;
  user: string;
  identityFiles: string[];
  identitiesOnly: boolean;
  knownHostsFiles: string[];
  strict: StrictMode;
  connectTimeoutMs: number;
  /** the host as written (URL or ProxyJump hop): ProxyCommand's %n */
  alias: string;
  /** comma-separated hops, first hop first */
  proxyJump?: string;
  proxyCommand?: string;
}

export function sftpCode(err: unknown): number | undefined {
  const c = (err as { code?: unknown } | undefined)?.code;
  return typeof c === 'number' ? c : undefined;
}

function strictMode(value: string | undefined, source: string): StrictMode {
  const v = (value ?? 'yes').toLowerCase();
  if (v === 'yes' || v === 'ask' || v === 'true') return 'yes';
  if (v === 'accept-new') return 'accept-new';
  if (v === 'no' || v === 'off' || v === 'false') return 'no';
  throw new UserError(`${source}: "${value}" is not one of yes, accept-new, no`);
}

/**
 * The ssh connections of one run: exactly one per user@host:port, opened on first use, with one SFTP channel
 * over which every file operation of every image is multiplexed.
 *
 * Authentication follows the ssh client: BUILD_SSH_KEY (with BUILD_SSH_KEY_PASSPHRASE) first when set, then
 * ssh-agent (SSH_AUTH_SOCK), then IdentityFile entries from ~/.ssh/config or the default identities.
 * Host keys are checked against known_hosts (BUILD_SSH_KNOWN_HOSTS or ~/.ssh/known_hosts and
 * /etc/ssh/ssh_known_hosts), with BUILD_SSH_STRICT_HOST_KEY_CHECKING = yes (default) | accept-new | no.
 */
export class SshConnections {
  private readonly sessions = new Map<string, Promise<Session>>();
  /** the established session behind each entry of `sessions` */
  private readonly live = new Map<string, Session>();
  private readonly log: Logger;
  private readonly env: NodeJS.ProcessEnv;
  private readonly home: string;
  private configText: Promise<string> | undefined;
  /** resolved connection settings per location host/user/port (the ssh config is read once) */
  private readonly targets = new Map<string, Promise<Target>>();
  private opened = 0;
  private closed = false;
  /** OpenSSH's ssh: null until looked up, undefined when it is not installed */
  private sshProgram: string | undefined | null = null;
  /** the account's home directory, where ssh itself looks for ~/.ssh */
  private readonly accountHome: string;

  constructor(opts: { log: Logger; env: NodeJS.ProcessEnv }) {
    this.log = opts.log;
    this.env = opts.env;
    this.home = opts.env.HOME || homedir();
    this.accountHome = accountHome();
  }

  get connectionsOpened(): number {
    return this.opened;
  }

  private localUser(): string {
    return this.env.USER || this.env.LOGNAME || userInfo().username;
  }

  private readConfig(): Promise<string> {
    if (!this.configText) {
      const path = this.env.BUILD_SSH_CONFIG || `${this.home}/.ssh/config`;
      this.configText =
        path === 'none'
          ? Promise.resolve('')
          : readFile(path, 'utf8').catch((err: NodeJS.ErrnoException) => {
              if (err.code === 'ENOENT' && !this.env.BUILD_SSH_CONFIG) return '';
              throw new UserError(`ssh config ${path} (BUILD_SSH_CONFIG): ${err.message}`);
            });
    }
    return this.configText;
  }

  /** The environment of `ssh -G` and ProxyCommand: ours without the key passphrase (they never need it). */
  private childEnv(): NodeJS.ProcessEnv {
    const { BUILD_SSH_KEY_PASSPHRASE: _secret, ...rest } = this.env;
    return rest;
  }

  /** OpenSSH's `ssh` (looked up once on PATH), or undefined: then the built-in parser reads the config. */
  private openSsh(): string | undefined {
    if (this.sshProgram === null) {
      this.sshProgram = findProgram('ssh', this.env.PATH);
      if (!this.sshProgram) {
        this.log.warn(
          'ssh: OpenSSH client not found on PATH; ssh config read by the built-in parser (Host blocks only: Include and Match are not honoured)',
        );
      }
    }
    return this.sshProgram;
  }

  /**
   * The `-F` file for `ssh -G`: BUILD_SSH_CONFIG (`none`: no file), else ssh's own defaults. When $HOME is not
   * the account's home directory (which is where ssh looks), $HOME/.ssh/config is named explicitly, as the
   * built-in parser always did.
   */
  private sshConfigArg(): string | undefined {
    const explicit = this.env.BUILD_SSH_CONFIG;
    if (explicit) return explicit === 'none' ? '/dev/null' : explicit;
    if (this.home === this.accountHome) return undefined;
    const mine = `${this.home}/.ssh/config`;
    return existsSync(mine) ? mine : '/dev/null';
  }

  /** The ssh client configuration for `host` (as written), resolved by `ssh -G` or the built-in parser. */
  private async hostConfig(
    host: string,
    user: string | undefined,
    port: number | undefined,
  ): Promise<SshHostConfig> {
    const ssh = this.openSsh();
    if (!ssh) return resolveSshConfig(parseSshConfig(await this.readConfig()), host);
    const configFile = this.sshConfigArg();
    const cfg = await resolveWithSsh(ssh, {
      host,
      user,
      port,
      ...(configFile !== undefined ? { configFile } : {}),
      env: this.childEnv(),
    });
    // ssh expands ~ to the account's home; $HOME wins here, as with the built-in parser
    if (this.home !== this.accountHome && cfg.userKnownHostsFiles) {
      const prefix = `${this.accountHome}/`;
      cfg.userKnownHostsFiles = cfg.userKnownHostsFiles.map((f) =>
        f.startsWith(prefix) ? `${this.home}/${f.slice(prefix.length)}` : f,
      );
    }
    return cfg;
  }

  private async target(loc: SshLocation): Promise<Target> {
    const cfg = await this.hostConfig(loc.host, loc.user, loc.port);
    const user = loc.user ?? cfg.user ?? this.localUser();
    const port = loc.port ?? cfg.port ?? 22;
    const vars = { home: this.home, localUser: this.localUser(), host: loc.host, remoteUser: user, port };
    const host = cfg.hostName ? expandPath(cfg.hostName, vars) : loc.host;
    const envTimeout = this.env.BUILD_SSH_CONNECT_TIMEOUT;
    let timeoutSec = cfg.connectTimeoutSec ?? DEFAULT_CONNECT_TIMEOUT_SEC;
    if (envTimeout !== undefined && envTimeout !== '') {
      if (!/^\d+(\.\d+)?$/.test(envTimeout) || Number(envTimeout) <= 0) {
        throw new UserError(`BUILD_SSH_CONNECT_TIMEOUT: "${envTimeout}" is not a positive number of seconds`);
      }
      timeoutSec = Number(envTimeout);
    }
    const knownHostsFiles = this.env.BUILD_SSH_KNOWN_HOSTS
      ? this.env.BUILD_SSH_KNOWN_HOSTS.split(':').filter(Boolean)
      : (cfg.userKnownHostsFiles ?? ['~/.ssh/known_hosts', '~/.ssh/known_hosts2']).map((p) =>
          expandPath(p, { ...vars, host }),
        );
    const strictSource = this.env.BUILD_SSH_STRICT_HOST_KEY_CHECKING
      ? 'BUILD_SSH_STRICT_HOST_KEY_CHECKING'
      : 'StrictHostKeyChecking in ssh config';
    const t: Target = {
      key: `${user}@${host}:${port}`,
      host,
      port,
      user,
      identityFiles: cfg.identityFiles.map((p) => expandPath(p, { ...vars, host })),
      identitiesOnly: cfg.identitiesOnly ?? false,
      knownHostsFiles,
      strict: strictMode(
        this.env.BUILD_SSH_STRICT_HOST_KEY_CHECKING || cfg.strictHostKeyChecking,
        strictSource,
      ),
      connectTimeoutMs: Math.round(timeoutSec * 1000),
      alias: loc.host,
    };
    if (cfg.proxyJump) t.proxyJump = cfg.proxyJump;
    else if (cfg.proxyCommand) t.proxyCommand = cfg.proxyCommand;
    return t;
  }

  /** The session for this location, connecting on first use. Errors are UserErrors naming `url`. */
  async session(loc: SshLocation, url: string): Promise<Session> {
    if (this.closed) throw new Error(`storage pool is closed (${url})`);
    let t: Target;
    try {
      const id = `${loc.user ?? ''}@${loc.host}:${loc.port ?? ''}`;
      let tp = this.targets.get(id);
      if (!tp) {
        tp = this.target(loc);
        this.targets.set(id, tp);
      }
      t = await tp;
    } catch (err) {
      if (err instanceof UserError) throw new UserError(`${url}: ${err.message}`);
      throw err;
    }
    let p = this.sessions.get(t.key);
    if (!p) {
      p = this.connect(t);
      this.sessions.set(t.key, p);
      // a failed connection stays cached: every image on that host gets the same error at once
      p.catch(() => {});
    }
    try {
      return await p;
    } catch (err) {
      throw new UserError(`${url}: ${errorMessage(err)}`);
    }
  }

  private async authMethods(t: Target): Promise<{ methods: AnyAuthMethod[]; tried: string[] }> {
    const methods: AnyAuthMethod[] = [];
    const tried: string[] = [];
    const username = t.user;
    const explicit = this.env.BUILD_SSH_KEY;
    if (explicit) {
      let data: Buffer;
      try {
        data = await readFile(explicit);
      } catch (err) {
        throw new UserError(`BUILD_SSH_KEY=${explicit}: ${errorMessage(err)}`);
      }
      const key = utils.parseKey(data, this.env.BUILD_SSH_KEY_PASSPHRASE || undefined);
      if (key instanceof Error) {
        throw new UserError(`BUILD_SSH_KEY=${explicit}: cannot use this private key: ${key.message}`);
      }
      methods.push({ type: 'publickey', username, key: key as ParsedKey });
      tried.push(`key ${explicit}`);
    }
    const agent = this.env.SSH_AUTH_SOCK;
    if (agent && !t.identitiesOnly) {
      methods.push({ type: 'agent', username, agent });
      tried.push('ssh-agent');
    }
    const files = t.identityFiles.length
      ? t.identityFiles
      : DEFAULT_IDENTITIES.map((n) => `${this.home}/.ssh/${n}`);
    for (const f of files) {
      if (f === explicit) continue;
      let data: Buffer;
      try {
        data = await readFile(f);
      } catch {
        continue;
      }
      const key = utils.parseKey(data);
      if (key instanceof Error) {
        this.log.debug(
          { file: f, reason: key.message },
          'ssh: skipping identity file (use ssh-agent for it)',
        );
        continue;
      }
      methods.push({ type: 'publickey', username, key: key as ParsedKey });
      tried.push(`key ${f}`);
    }
    if (methods.length === 0) {
      throw new UserError(
        `no ssh credentials for ${t.key}: no ssh-agent (SSH_AUTH_SOCK), no BUILD_SSH_KEY and no usable ` +
          `identity file (${files.join(', ')})`,
      );
    }
    return { methods, tried };
  }

  private async knownHosts(t: Target): Promise<KnownHostEntry[]> {
    const files = [...t.knownHostsFiles];
    if (!this.env.BUILD_SSH_KNOWN_HOSTS) files.push('/etc/ssh/ssh_known_hosts', '/etc/ssh/ssh_known_hosts2');
    const entries: KnownHostEntry[] = [];
    for (const f of files) {
      try {
        entries.push(...parseKnownHosts(await readFile(f, 'utf8')));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
          throw new UserError(`known_hosts file ${f}: ${errorMessage(err)}`);
        }
        if (this.env.BUILD_SSH_KNOWN_HOSTS && t.strict !== 'accept-new') {
          throw new UserError(`BUILD_SSH_KNOWN_HOSTS: ${f} does not exist`);
        }
      }
    }
    return entries;
  }

  private async connect(t: Target): Promise<Session> {
    const client = await this.openClient(t, 0);
    let session: Session | undefined;
    client.on('close', () => {
      if (session) this.discard(session);
    });
    const sftp = await new Promise<SFTPWrapper>((resolve, reject) => {
      client.sftp((err, channel) => {
        if (err) {
          client.end();
          reject(new Error(`${t.key}: cannot open an SFTP channel: ${err.message}`));
        } else resolve(channel);
      });
    });
    const s: Session = { key: t.key, client, sftp, dirs: new Map(), alive: true, pending: new Set() };
    session = s;
    this.live.set(t.key, s);
    sftp.on('close', () => {
      this.discard(s);
      client.end();
    });
    sftp.on('error', (e: Error) => {
      this.log.warn({ host: t.key, err: e.message }, 'ssh: SFTP channel error');
      this.discard(s);
      client.end();
    });
    this.log.debug({ host: t.key }, 'ssh: connected');
    return s;
  }

  /**
   * An authenticated ssh connection to `t`: directly, through its ProxyJump hosts (each one an ssh connection
   * of its own, carrying the next over a direct-tcpip channel), or over its ProxyCommand's stdio.
   */
  private async openClient(t: Target, depth: number): Promise<SshClient> {
    const { methods, tried } = await this.authMethods(t);
    const entries = await this.knownHosts(t);
    const hostName = knownHostName(t.host, t.port);
    let hostKeyProblem: string | undefined;
    let newHostKey: Buffer | undefined;
    const verify = (blob: Buffer): boolean => {
      const verdict = checkHostKey(entries, hostName, blob);
      if (verdict === 'match') return true;
      const fp = `${keyBlobType(blob)} SHA256:${fingerprint(blob)}`;
      if (verdict === 'revoked') {
        hostKeyProblem = `host key of ${hostName} (${fp}) is marked @revoked in known_hosts`;
        return false;
      }
      if (verdict === 'mismatch') {
        if (t.strict === 'no') {
          this.log.warn(
            { host: hostName, key: fp },
            'ssh: HOST KEY DOES NOT MATCH known_hosts; accepted (strict=no)',
          );
          return true;
        }
        hostKeyProblem =
          `HOST KEY MISMATCH for ${hostName}: the server offered ${fp}, which is not the key in ` +
          `${t.knownHostsFiles.join(', ')} (possible man-in-the-middle; fix known_hosts if the key really changed)`;
        return false;
      }
      if (t.strict === 'yes') {
        hostKeyProblem =
          `host ${hostName} is not in known_hosts (${t.knownHostsFiles.join(', ')}); add its key ` +
          `(ssh-keyscan -p ${t.port} ${t.host}) or set BUILD_SSH_STRICT_HOST_KEY_CHECKING=accept-new`;
        return false;
      }
      if (t.strict === 'accept-new') newHostKey = blob;
      return true;
    };

    const route = await this.route(t, depth);
    const client = new Client();
    await new Promise<void>((resolve, reject) => {
      let settled = false;
      const fail = (err: Error) => {
        if (settled) return;
        settled = true;
        client.end();
        route?.close();
        reject(err);
      };
      client.on('error', (err: Error & { level?: string; code?: string }) => {
        if (!settled) {
          fail(new Error(this.connectError(t, err, hostKeyProblem, tried, route?.why())));
          return;
        }
        this.log.warn({ host: t.key, err: err.message }, 'ssh connection error');
      });
      client.on('close', () => {
        route?.close();
        if (!settled) {
          const why = route?.why();
          fail(
            new Error(
              `cannot connect to ${t.key}: connection closed during handshake${why ? ` (${why})` : ''}`,
            ),
          );
        }
      });
      client.on('ready', () => {
        this.opened += 1;
        settled = true;
        resolve();
      });
      this.log.debug({ host: t.key, via: route?.via }, 'ssh: connecting');
      client.connect({
        host: t.host,
        port: t.port,
        username: t.user,
        authHandler: methods,
        hostVerifier: verify,
        algorithms: { serverHostKey: hostKeyAlgorithms(entries, hostName) as never },
        readyTimeout: t.connectTimeoutMs,
        keepaliveInterval: 10_000,
        keepaliveCountMax: 3,
        ...(route ? { sock: route.sock } : {}),
      });
    });
    if (newHostKey) await this.recordHostKey(t, hostName, newHostKey);
    return client;
  }

  /**
   * The socket that carries the connection to `t` when it is not a plain TCP connection: a channel through
   * the last ProxyJump host (itself reached through the hops before it), or a ProxyCommand's stdio.
   */
  private async route(
    t: Target,
    depth: number,
  ): Promise<{ sock: Duplex; via: string; close(): void; why(): string | undefined } | undefined> {
    if (t.proxyJump) {
      if (depth >= MAX_JUMPS) {
        throw new UserError(
          `more than ${MAX_JUMPS} ProxyJump hops to reach ${t.key} (a loop in the ssh config?)`,
        );
      }
      const hops = t.proxyJump.split(',').map((h) => h.trim());
      const last = parseJumpHop(hops.pop()!);
      const jump = await this.target({
        kind: 'ssh',
        host: last.host,
        path: '.',
        ...(last.user !== undefined ? { user: last.user } : {}),
        ...(last.port !== undefined ? { port: last.port } : {}),
      });
      // `ssh -J a,b target` reaches b through a; the last hop's own ProxyJump applies only to a single hop
      if (hops.length) {
        jump.proxyJump = hops.join(',');
        delete jump.proxyCommand;
      }
      let jumpClient: SshClient;
      try {
        jumpClient = await this.openClient(jump, depth + 1);
      } catch (err) {
        throw new Error(`ProxyJump ${jump.key} (to reach ${t.key}): ${errorMessage(err)}`);
      }
      const sock = await new Promise<Duplex>((resolve, reject) => {
        jumpClient.forwardOut('127.0.0.1', 0, t.host, t.port, (err, channel) => {
          if (err) {
            jumpClient.end();
            reject(
              new Error(
                `ProxyJump ${jump.key} could not open a channel to ${t.host}:${t.port}: ${err.message}`,
              ),
            );
          } else resolve(channel);
        });
      });
      sock.once('close', () => jumpClient.end());
      return { sock, via: `ProxyJump ${jump.key}`, close: () => jumpClient.end(), why: () => undefined };
    }
    if (t.proxyCommand) {
      const command = expandProxyCommand(t.proxyCommand, {
        host: t.host,
        port: t.port,
        user: t.user,
        alias: t.alias,
      });
      let ended: string | undefined;
      // its last words on stderr explain a failed connection (ssh's own ProxyCommand errors go there too)
      const said: string[] = [];
      const p = proxyCommandSocket(command, this.childEnv(), (line) => {
        said.push(line);
        if (said.length > 3) said.shift();
        this.log.debug({ host: t.key, line }, 'ssh: ProxyCommand stderr');
      });
      void p.exited.then((why) => {
        ended = why;
      });
      return {
        sock: p.sock,
        via: 'ProxyCommand',
        close: () => p.sock.destroy(),
        why: () =>
          [ended, said.length ? `it said: ${said.join(' / ')}` : undefined].filter(Boolean).join('; ') ||
          undefined,
      };
    }
    return undefined;
  }

  /** Forget a session whose connection has died; the next operation on that host opens a new one. */
  discard(s: Session): void {
    if (!s.alive) return;
    s.alive = false;
    const lost = new Error('Not connected: ssh connection lost');
    for (const abort of s.pending) abort(lost);
    s.pending.clear();
    if (this.live.get(s.key) === s) {
      this.live.delete(s.key);
      this.sessions.delete(s.key);
      if (!this.closed) this.log.warn({ host: s.key }, 'ssh connection lost; reconnecting on next use');
    }
  }

  private async recordHostKey(t: Target, hostName: string, blob: Buffer): Promise<void> {
    const file = t.knownHostsFiles[0];
    if (!file) return;
    try {
      await mkdir(dirname(file), { recursive: true, mode: 0o700 });
      await appendFile(file, `${hostName} ${keyBlobType(blob)} ${blob.toString('base64')}\n`, {
        mode: 0o600,
      });
      this.log.info({ host: hostName, file }, 'ssh: added new host key to known_hosts');
    } catch (err) {
      this.log.warn({ host: hostName, file, err: errorMessage(err) }, 'ssh: could not record the host key');
    }
  }

  private connectError(
    t: Target,
    err: Error & { level?: string; code?: string },
    hostKeyProblem: string | undefined,
    tried: string[],
    routeProblem?: string,
  ): string {
    if (hostKeyProblem) return hostKeyProblem;
    const via = t.proxyJump ? ` via ProxyJump ${t.proxyJump}` : t.proxyCommand ? ' via ProxyCommand' : '';
    const where = `cannot connect to ssh server ${t.key}${via}`;
    if (routeProblem) return `${where}: ${routeProblem}`;
    switch (err.code) {
      case 'ECONNREFUSED':
        return `${where}: connection refused`;
      case 'ENOTFOUND':
      case 'EAI_AGAIN':
        return `${where}: host name "${t.host}" does not resolve`;
      case 'EHOSTUNREACH':
      case 'ENETUNREACH':
        return `${where}: host unreachable`;
      case 'ETIMEDOUT':
        return `${where}: connection timed out`;
    }
    if (err.level === 'client-timeout') {
      return `${where}: no ssh handshake within ${t.connectTimeoutMs / 1000} s (BUILD_SSH_CONNECT_TIMEOUT)`;
    }
    if (err.level === 'client-authentication') {
      return `ssh authentication failed for ${t.key} (tried: ${tried.join(', ')})`;
    }
    return `${where}: ${err.message}`;
  }

  async close(): Promise<void> {
    this.closed = true;
    const all = [...this.sessions.values()];
    this.sessions.clear();
    this.live.clear();
    await Promise.allSettled(
      all.map(async (p) => {
        const s = await p;
        await new Promise<void>((resolve) => {
          const timer = setTimeout(() => {
            s.client.destroy();
            resolve();
          }, 2000);
          s.client.once('close', () => {
            clearTimeout(timer);
            resolve();
          });
          s.client.end();
        });
      }),
    );
  }
}

/** The account's home directory from the password database (where ssh looks, whatever $HOME says). */
function accountHome(): string {
  try {
    return userInfo().homedir;
  } catch {
    return homedir();
  }
}

/** OpenSSH-style SHA256 fingerprint: unpadded base64. */
function fingerprint(blob: Buffer): string {
  return createHash('sha256').update(blob).digest('base64').replace(/=+$/, '');
}

// -----------------------------------------------------------------------------------------------------------
// SFTP helpers

/**
 * One SFTP request as a promise. It is rejected as soon as the session dies, even if ssh2 never calls back
 * (requests queued while a connection is going down can otherwise wait forever).
 */
export function call<T>(
  s: Session,
  fn: (cb: (err: Error | null | undefined, value: T) => void) => void,
): Promise<T> {
  if (!s.alive) return Promise.reject(new Error('Not connected: ssh connection lost'));
  return new Promise<T>((resolve, reject) => {
    const abort = (err: Error) => reject(err);
    s.pending.add(abort);
    fn((err, value) => {
      s.pending.delete(abort);
      if (err) reject(err);
      else resolve(value);
    });
  });
}

/** Errors that mean the connection or channel is gone rather than that the operation failed. */
export function connectionLost(err: unknown): boolean {
  if (sftpCode(err) !== undefined) return false;
  return /No response from server|Not connected|Channel (not open|closed)|ECONNRESET|EPIPE|write after end|socket/i.test(
    errorMessage(err),
  );
}
