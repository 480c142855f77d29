/**
 * A real OpenSSH server on 127.0.0.1 for tests and benchmarks: temporary host key, one authorised client key,
 * a free port, and SFTP sessions that start in a temporary "home" directory (so ssh://host/relative/path
 * lands there instead of in the real home). Usable from vitest and from `npx tsx bench/...`.
 *
 *   const sshd = await startSshd();
 *   const pool = createStoragePool({ log, env: { ...process.env, ...sshd.env } });
 *   pool.get(`${sshd.urlPrefix}/some/dir`)      // relative to sshd.home
 *   pool.get(`${sshd.urlPrefix}/${absDir}`)     // absDir starts with '/', so this is ssh://host//abs
 *   await sshd.stop();
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createConnection, createServer } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';

export const SSHD = '/usr/sbin/sshd';
export const SSH_KEYGEN = '/usr/bin/ssh-keygen';

export interface SshdHandle {
  host: '127.0.0.1';
  port: number;
  user: string;
  /** `ssh://user@127.0.0.1:port`; append `/rel/path` (relative to `home`) or `//abs/path` */
  urlPrefix: string;
  /** where SFTP sessions start: relative storage paths resolve here */
  home: string;
  /** temporary directory with the keys, config and home */
  dir: string;
  /** client private key (authorised), and a known_hosts file holding this server's host key */
  keyFile: string;
  knownHostsFile: string;
  /** environment for the storage pool: BUILD_SSH_KEY, BUILD_SSH_KNOWN_HOSTS, strict checking, no agent/config */
  env: Record<string, string>;
  /** arguments for the OpenSSH client (`ssh ...sshArgs user@127.0.0.1 cmd`) with the same key and host key */
  sshArgs: string[];
  /** ssh logins the server accepted so far (from its log file, so also right after a blocking execFileSync) */
  acceptedConnections(): number;
  /** the server's log so far */
  log(): string;
  /** kill the per-connection server processes: every open client connection drops (the listener stays) */
  dropConnections(): Promise<void>;
  stop(): Promise<void>;
}

/** Why sshd cannot run here, or undefined when it can. */
export function sshdUnavailableReason(): string | undefined {
  if (!existsSync(SSHD)) return `${SSHD} not installed (apt-get install openssh-server)`;
  if (!existsSync(SSH_KEYGEN)) return `${SSH_KEYGEN} not installed (apt-get install openssh-client)`;
  return undefined;
}

/** Pids of all descendants of `pid` (sshd's per-connection processes start their own sessions). */
export function descendants(pid: number): number[] {
  const parent = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // "pid (comm) state ppid ...": comm may contain spaces, so split after the last ')'
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      parent.set(Number(entry), ppid);
    } catch {
      // exited meanwhile
    }
  }
  const out: number[] = [];
  const walk = (p: number) => {
    for (const [child, pp] of parent) {
      if (pp === p) {
        out.push(child);
        walk(child);
      }
    }
  };
  walk(pid);
  return out;
}

/** Still running (not exited, not a zombie)? */
function running(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

function killAll(pids: number[], signal: NodeJS.Signals): void {
  for (const pid of pids) {
    try {
      process.kill(pid, signal);
    } catch {
      // already gone
    }
  }
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** Resolve once something on the port answers with an SSH banner. */
function waitForBanner(port: number, child: ChildProcess, logText: () => string, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  return new Promise<void>((resolve, reject) => {
    const attempt = () => {
      if (child.exitCode !== null || child.signalCode !== null) {
        reject(new Error(`sshd exited (${child.exitCode ?? child.signalCode}):\n${logText()}`));
        return;
      }
      if (Date.now() > deadline) {
        reject(new Error(`sshd did not answer on port ${port} within ${timeoutMs} ms:\n${logText()}`));
        return;
      }
      const sock = createConnection({ host: '127.0.0.1', port });
      let got = '';
      const retry = () => {
        sock.destroy();
        setTimeout(attempt, 50);
      };
      sock.on('data', (d) => {
        got += d.toString('latin1');
        if (got.startsWith('SSH-')) {
          sock.destroy();
          resolve();
        }
      });
      sock.on('error', retry);
      sock.setTimeout(1000, retry);
    };
    attempt();
  });
}

export async function startSshd(
  opts: {
    home?: string;
    /** more sshd_config lines (e.g. LogLevel DEBUG1, PermitOpen), ahead of the defaults */
    extraConfig?: string[];
  } = {},
): Promise<SshdHandle> {
  const reason = sshdUnavailableReason();
  if (reason) throw new Error(`cannot start sshd: ${reason}`);
  const dir = await mkdtemp(join(tmpdir(), 'sshd-'));
  const home = opts.home ?? join(dir, 'home');
  mkdirSync(home, { recursive: true });
  const user = userInfo().username;
  const hostKey = join(dir, 'ssh_host_ed25519_key');
  const keyFile = join(dir, 'id_ed25519');
  execFileSync(SSH_KEYGEN, ['-q', '-t', 'ed25519', '-N', '', '-C', 'test-host', '-f', hostKey]);
  execFileSync(SSH_KEYGEN, ['-q', '-t', 'ed25519', '-N', '', '-C', 'test-client', '-f', keyFile]);
  await writeFile(join(dir, 'authorized_keys'), await readFile(`${keyFile}.pub`), { mode: 0o600 });
  // privilege separation directory that Debian's sshd expects when run as root
  if (process.getuid?.() === 0) mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });

  for (let tries = 0; ; tries++) {
    const port = await freePort();
    const config = join(dir, 'sshd_config');
    await writeFile(
      config,
      [
        // first: sshd takes the first value of a keyword
        ...(opts.extraConfig ?? []),
        `Port ${port}`,
        'ListenAddress 127.0.0.1',
        `HostKey ${hostKey}`,
        `PidFile ${join(dir, 'sshd.pid')}`,
        `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
        'StrictModes no',
        'UsePAM no',
        'PasswordAuthentication no',
        'KbdInteractiveAuthentication no',
        'PubkeyAuthentication yes',
        'PermitRootLogin prohibit-password',
        'MaxStartups 200',
        'MaxSessions 100',
        'LogLevel VERBOSE',
        `Subsystem sftp internal-sftp -d ${home}`,
        '',
      ].join('\n'),
    );
    // the log goes to a file, read on demand: callers that block the event loop (execFileSync of ./build)
    // still see every line the server wrote meanwhile
    const logFile = join(dir, `sshd-${tries}.log`);
    const log = () => {
      try {
        return readFileSync(logFile, 'utf8');
      } catch {
        return '';
      }
    };
    // its own process group, so stop() also ends the listener's helpers
    const child = spawn(SSHD, ['-D', '-E', logFile, '-f', config], { stdio: 'ignore', detached: true });
    try {
      await waitForBanner(port, child, log, 10_000);
    } catch (err) {
      if (child.exitCode === null) process.kill(-child.pid!, 'SIGKILL');
      if (tries < 2 && /Address already in use/.test(log())) continue;
      await rm(dir, { recursive: true, force: true });
      throw err;
    }
    const hostPub = (await readFile(`${hostKey}.pub`, 'utf8')).trim().split(/\s+/);
    const knownHostsFile = join(dir, 'known_hosts');
    await writeFile(knownHostsFile, `[127.0.0.1]:${port} ${hostPub[0]} ${hostPub[1]}\n`);
    let stopped = false;
    // if the caller exits without stop() (a crashed bench, process.exit), take the server down too
    const onExit = () => {
      killAll([...descendants(child.pid!), child.pid!], 'SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    };
    process.once('exit', onExit);
    return {
      host: '127.0.0.1',
      port,
      user,
      urlPrefix: `ssh://${user}@127.0.0.1:${port}`,
      home,
      dir,
      keyFile,
      knownHostsFile,
      env: {
        BUILD_SSH_KEY: keyFile,
        BUILD_SSH_KNOWN_HOSTS: knownHostsFile,
        BUILD_SSH_STRICT_HOST_KEY_CHECKING: 'yes',
        BUILD_SSH_CONFIG: 'none',
        SSH_AUTH_SOCK: '',
      },
      sshArgs: [
        '-p',
        String(port),
        '-i',
        keyFile,
        '-o',
        `UserKnownHostsFile=${knownHostsFile}`,
        '-o',
        'GlobalKnownHostsFile=/dev/null',
        '-o',
        'IdentitiesOnly=yes',
        '-o',
        'BatchMode=yes',
        '-F',
        '/dev/null',
      ],
      acceptedConnections: () => (log().match(/Accepted publickey for /g) ?? []).length,
      log,
      async dropConnections() {
        const pids = descendants(child.pid!);
        killAll(pids, 'SIGKILL');
        // wait until they are gone, so the clients have seen their connections close
        for (let i = 0; i < 100 && pids.some(running); i++) {
          await new Promise((r) => setTimeout(r, 20));
        }
      },
      async stop() {
        if (stopped) return;
        stopped = true;
        process.removeListener('exit', onExit);
        const exited = new Promise<void>((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) resolve();
          else child.once('exit', () => resolve());
        });
        const sessions = descendants(child.pid!);
        try {
          process.kill(-child.pid!, 'SIGTERM');
        } catch {
          // already gone
        }
        killAll(sessions, 'SIGTERM');
        const timer = setTimeout(() => {
          try {
            process.kill(-child.pid!, 'SIGKILL');
          } catch {
            // already gone
          }
        }, 3000);
        await exited;
        clearTimeout(timer);
        await rm(dir, { recursive: true, force: true });
      },
    };
  }
}
