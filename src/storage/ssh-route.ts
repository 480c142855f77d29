/**
 * How ssh:// storage reaches a host, resolved the way OpenSSH's own client resolves it.
 *
 * When OpenSSH's `ssh` is on PATH, a host's settings come from `ssh -G <host>`: the client evaluates the
 * whole configuration (Include, Match, Host, CanonicalizeHostname, %-tokens, /etc/ssh/ssh_config) and prints
 * the result, so a ~/.ssh/config that works for `ssh` works here too. Without `ssh`, the built-in parser of
 * ssh-config.ts reads the file (Host blocks only) and the caller says so once.
 *
 * A host behind ProxyJump is reached through an ssh2 connection to each jump host (a direct-tcpip channel,
 * `forwardOut`, carries the next connection); ProxyCommand is spawned with `sh -c` and its stdin/stdout are
 * the connection, as with `ssh`.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { Duplex, type Readable, type Writable } from 'node:stream';
import { UserError } from '../util/errors.js';
import { applySshOption, type SshHostConfig } from './ssh-config.js';

/** The full path of `name` on PATH (executable), or undefined. */
export function findProgram(name: string, pathEnv: string | undefined): string | undefined {
  for (const dir of (pathEnv ?? '').split(delimiter)) {
    if (!dir) continue;
    const p = join(dir, name);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** The settings `ssh -G` printed, in the form the built-in parser gives (every field is set by ssh -G). */
export function parseSshG(text: string): SshHostConfig {
  const cfg: SshHostConfig = { identityFiles: [] };
  for (const line of text.split('\n')) {
    const m = /^(\S+) (.*)$/.exec(line.trimEnd());
    if (!m) continue;
    const key = m[1]!.toLowerCase();
    // one value per line, except the known-hosts files (space-separated)
    applySshOption(cfg, key, key === 'userknownhostsfile' ? m[2]!.split(/\s+/).filter(Boolean) : [m[2]!]);
  }
  return cfg;
}

/**
 * Ask OpenSSH how it would connect to `host`. `configFile` is passed as `-F` (undefined: ssh's own default
 * files); an explicit user or port (from the URL or a ProxyJump hop) overrides the configuration, as `-l` and
 * `-p` do for ssh. Nothing secret is on this command line: host, user, port and a file name.
 */
export function resolveWithSsh(
  program: string,
  opts: {
    host: string;
    user?: string | undefined;
    port?: number | undefined;
    configFile?: string;
    env: NodeJS.ProcessEnv;
  },
): Promise<SshHostConfig> {
  if (opts.host.startsWith('-')) return Promise.reject(new UserError(`"${opts.host}" is not a host name`));
  const args = ['-G'];
  if (opts.configFile !== undefined) args.push('-F', opts.configFile);
  if (opts.user !== undefined) args.push('-l', opts.user);
  if (opts.port !== undefined) args.push('-p', String(opts.port));
  args.push(opts.host);
  return new Promise((resolve, reject) => {
    execFile(program, args, { env: opts.env, timeout: 10_000, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err) {
        const why =
          stderr
            .split('\n')
            .filter((l) => l.trim() && !/^Pseudo-terminal will not be allocated/.test(l))
            .join('; ') || err.message;
        reject(
          new UserError(`ssh -G ${opts.host}${opts.configFile ? ` -F ${opts.configFile}` : ''}: ${why}`),
        );
        return;
      }
      resolve(parseSshG(stdout));
    });
  });
}

export interface JumpHop {
  user?: string;
  host: string;
  port?: number;
}

/** One ProxyJump hop: `[user@]host[:port]`, `[user@][v6addr]:port` or `ssh://[user@]host[:port]`. */
export function parseJumpHop(spec: string): JumpHop {
  const s = spec.replace(/^ssh:\/\//, '').replace(/\/$/, '');
  const m = /^(?:([^@]+)@)?(?:\[([^\]]+)\]|([^:@[\]]+))(?::(\d+))?$/.exec(s);
  if (!m) throw new UserError(`ProxyJump "${spec}": expected [user@]host[:port]`);
  const hop: JumpHop = { host: (m[2] ?? m[3])! };
  if (m[1] !== undefined) hop.user = m[1];
  if (m[4] !== undefined) hop.port = Number(m[4]);
  return hop;
}

/** A ProxyJump value as hops, first hop first (`none` and empty: no hops). */
export function parseProxyJump(value: string | undefined): JumpHop[] {
  if (!value || value.toLowerCase() === 'none') return [];
  return value
    .split(',')
    .map((h) => h.trim())
    .filter(Boolean)
    .map(parseJumpHop);
}

/** ProxyCommand's %-tokens, as ssh expands them. */
export function expandProxyCommand(
  command: string,
  vars: { host: string; port: number; user: string; alias: string },
): string {
  return command.replace(/%([%hpnr])/g, (_w, t: string) => {
    switch (t) {
      case 'h':
        return vars.host;
      case 'p':
        return String(vars.port);
      case 'r':
        return vars.user;
      case 'n':
        return vars.alias;
      default:
        return '%';
    }
  });
}

/**
 * Run a ProxyCommand (through `sh -c 'exec …'`, as ssh does) and return its stdio as the connection's socket.
 * What it prints on stderr goes to `onStderr` line by line; the process is killed when the socket closes.
 */
export function proxyCommandSocket(
  command: string,
  env: NodeJS.ProcessEnv,
  onStderr: (line: string) => void,
): { sock: Duplex; child: ChildProcess; exited: Promise<string> } {
  const child = spawn('/bin/sh', ['-c', `exec ${command}`], { env, stdio: ['pipe', 'pipe', 'pipe'] });
  let tail = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (d: string) => {
    const lines = (tail + d).split('\n');
    tail = lines.pop()!;
    for (const l of lines) if (l.trim()) onStderr(l);
  });
  const exited = new Promise<string>((resolve) => {
    child.once('error', (e) => resolve(`cannot run ProxyCommand: ${e.message}`));
    child.once('exit', (code, sig) => {
      if (tail.trim()) onStderr(tail);
      resolve(`ProxyCommand exited (${sig ?? code})`);
    });
  });
  const sock = new ProcessSocket(child.stdout!, child.stdin!);
  // the connection's end is the command's end; stdin errors (EPIPE after it exited) are reported via close
  child.stdin!.on('error', () => {});
  sock.on('error', () => {});
  sock.once('close', () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
  });
  return { sock, child, exited };
}

/** A child process's stdout (what comes in) and stdin (what goes out) as one socket-like stream. */
class ProcessSocket extends Duplex {
  constructor(
    private readonly input: Readable,
    private readonly output: Writable,
  ) {
    super();
    input.on('data', (d: Buffer) => {
      if (!this.push(d)) input.pause();
    });
    input.once('end', () => this.push(null));
  }

  override _read(): void {
    this.input.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.output.write(chunk, cb);
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.output.end(cb);
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.output.destroy();
    this.input.destroy();
    cb(err);
  }
}
