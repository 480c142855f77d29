/**
 * ssh:// storage resolved the way OpenSSH resolves it (`ssh -G`): an ssh config with Include, Match, Host and
 * ProxyJump reaches a storage host through a jump host, both real sshd servers on 127.0.0.1. Both listen on
 * loopback, so the target is not unreachable directly; that the connection went through the jump is proved by
 * the jump server's own log (its direct-tcpip request to the target's port), by the jump refusing a port its
 * PermitOpen does not allow, and by a ProxyCommand (OpenSSH's `ssh -W` through the same jump) that records
 * each use.
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createStoragePool } from '../../src/storage/index.js';
import { findProgram } from '../../src/storage/ssh-route.js';
import { silentLogger } from '../../src/util/log.js';
import { freePort, type SshdHandle, sshdUnavailableReason, startSshd } from '../helpers/sshd.js';

const noSsh = findProgram('ssh', process.env.PATH) ? undefined : 'OpenSSH client (ssh) not installed';
const skip = sshdUnavailableReason() ?? noSsh;

describe.skipIf(skip)('ssh:// through a ProxyJump host, resolved by ssh -G', () => {
  let target: SshdHandle;
  let jump: SshdHandle;
  let dir: string;
  let deniedPort: number;
  const log = silentLogger();

  /** environment of a run: the config under test, the two servers' host keys, no agent and no BUILD_SSH_KEY */
  const env = (config: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv => {
    const e: NodeJS.ProcessEnv = {
      ...process.env,
      HOME: join(dir, 'home'),
      SSH_AUTH_SOCK: '',
      BUILD_SSH_CONFIG: config,
      BUILD_SSH_KNOWN_HOSTS: `${target.knownHostsFile}:${jump.knownHostsFile}`,
      BUILD_SSH_STRICT_HOST_KEY_CHECKING: 'yes',
      ...extra,
    };
    delete e.BUILD_SSH_KEY;
    return e;
  };
  const storeOne = async (e: NodeJS.ProcessEnv, url: string, name: string) => {
    const src = await mkdtemp(join(dir, 'src-'));
    await writeFile(join(src, name), `via ${url}`);
    const pool = createStoragePool({ log, env: e });
    try {
      await pool.get(url).store(src, [name]);
      return pool.stats().sshConnections;
    } finally {
      await pool.close();
    }
  };

  beforeAll(async () => {
    target = await startSshd();
    deniedPort = await freePort();
    // the jump host forwards to the target's port only, and logs each forwarding request (DEBUG1)
    jump = await startSshd({
      extraConfig: ['LogLevel DEBUG1', 'AllowTcpForwarding yes', `PermitOpen 127.0.0.1:${target.port}`],
    });
    dir = await mkdtemp(join(tmpdir(), 'ssh-jump-'));
    await mkdir(join(dir, 'home'));
    await mkdir(join(dir, 'conf.d'));
    const known = `${target.knownHostsFile} ${jump.knownHostsFile}`;
    // the jump host is defined in an included file, as in a typical ~/.ssh/config.d layout
    await writeFile(
      join(dir, 'conf.d', 'bastion.conf'),
      [
        'Host bastion',
        '  HostName 127.0.0.1',
        `  Port ${jump.port}`,
        `  User ${jump.user}`,
        `  IdentityFile ${jump.keyFile}`,
        '  IdentitiesOnly yes',
        '',
        // the storage alias's route comes from a Match block (the built-in parser would ignore it)
        'Match originalhost storage',
        '  ProxyJump bastion',
        '',
      ].join('\n'),
    );
    const common = [
      `  User ${target.user}`,
      `  IdentityFile ${target.keyFile}`,
      '  IdentitiesOnly yes',
      `  UserKnownHostsFile ${known}`,
      '  GlobalKnownHostsFile /dev/null',
      '  BatchMode yes',
    ];
    await writeFile(
      join(dir, 'config'),
      [
        `Include ${join(dir, 'conf.d', '*.conf')}`,
        '',
        'Host storage',
        '  HostName 127.0.0.1',
        `  Port ${target.port}`,
        ...common,
        '',
        'Host storage-denied',
        '  HostName 127.0.0.1',
        `  Port ${deniedPort}`,
        '  ProxyJump bastion',
        ...common,
        '',
        'Host storage-pc',
        '  HostName 127.0.0.1',
        `  Port ${target.port}`,
        // OpenSSH itself carries the connection through the jump; the wrapper records each use
        // (ssh runs it as `exec <command>`, hence the inner shell)
        `  ProxyCommand sh -c 'echo "%n %h:%p %r \${BUILD_SSH_KEY_PASSPHRASE:-no-passphrase}" >> ${join(dir, 'proxy.log')}; exec ssh -F ${join(dir, 'config')} -W %h:%p bastion'`,
        ...common,
        '',
        'Host *',
        `  UserKnownHostsFile ${known}`,
        '  GlobalKnownHostsFile /dev/null',
        '  BatchMode yes',
        '',
      ].join('\n'),
    );
  }, 60_000);

  afterAll(async () => {
    await Promise.all([target?.stop(), jump?.stop()]);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('Include + Match + Host + ProxyJump: the file lands on the target, carried by the jump host', async () => {
    const forwardsBefore = forwards(jump.log(), target.port);
    const connections = await storeOne(env(join(dir, 'config')), 'ssh://storage/jumped', 'a.txt');
    expect(await readFile(join(target.home, 'jumped', 'a.txt'), 'utf8')).toBe('via ssh://storage/jumped');
    // two ssh connections: one to the jump host, one (inside it) to the target
    expect(connections).toBe(2);
    // the jump server authenticated us and opened the channel to the target's port
    expect(jump.acceptedConnections()).toBeGreaterThanOrEqual(1);
    expect(forwards(jump.log(), target.port)).toBe(forwardsBefore + 1);
    expect(target.acceptedConnections()).toBeGreaterThanOrEqual(1);
  });

  it('a jump host that refuses the forward (PermitOpen) is a clear error naming the jump', async () => {
    const pool = createStoragePool({ log, env: env(join(dir, 'config')) });
    try {
      const err = await pool
        .get('ssh://storage-denied/x')
        .list()
        .then(
          () => undefined,
          (e: Error) => e,
        );
      expect(err?.message).toMatch(
        new RegExp(
          `^ssh://storage-denied/x: ProxyJump ${jump.user}@127\\.0\\.0\\.1:${jump.port} could not open a channel to 127\\.0\\.0\\.1:${deniedPort}: .*open failed`,
        ),
      );
    } finally {
      await pool.close();
    }
  });

  it('ProxyCommand: its stdio is the connection (OpenSSH ssh -W through the jump)', async () => {
    const forwardsBefore = forwards(jump.log(), target.port);
    // the key passphrase (a secret of ours) is not handed to the ProxyCommand
    await storeOne(
      env(join(dir, 'config'), { BUILD_SSH_KEY_PASSPHRASE: 'not-for-children' }),
      'ssh://storage-pc/proxied',
      'b.txt',
    );
    expect(await readFile(join(target.home, 'proxied', 'b.txt'), 'utf8')).toBe(
      'via ssh://storage-pc/proxied',
    );
    expect(await readFile(join(dir, 'proxy.log'), 'utf8')).toBe(
      `storage-pc 127.0.0.1:${target.port} ${target.user} no-passphrase\n`,
    );
    expect(forwards(jump.log(), target.port)).toBe(forwardsBefore + 1);
  });

  it('without OpenSSH on PATH: one line says so, and the built-in parser still follows ProxyJump', async () => {
    // the built-in parser has no Include: a flat config with both hosts
    const flat = join(dir, 'flat-config');
    await writeFile(
      flat,
      [
        'Host storage',
        '  HostName 127.0.0.1',
        `  Port ${target.port}`,
        `  User ${target.user}`,
        `  IdentityFile ${target.keyFile}`,
        '  ProxyJump bastion',
        'Host bastion',
        '  HostName 127.0.0.1',
        `  Port ${jump.port}`,
        `  User ${jump.user}`,
        `  IdentityFile ${jump.keyFile}`,
        '',
      ].join('\n'),
    );
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk, _enc, cb) {
        lines.push(String(chunk));
        cb();
      },
    });
    const forwardsBefore = forwards(jump.log(), target.port);
    const src = await mkdtemp(join(dir, 'src-'));
    await writeFile(join(src, 'c.txt'), 'fallback');
    const pool = createStoragePool({
      log: pino({ level: 'info' }, sink),
      env: env(flat, { PATH: join(dir, 'no-bin') }),
    });
    try {
      await pool.get('ssh://storage/fallback').store(src, ['c.txt']);
      await pool.get('ssh://storage/fallback2').store(src, ['c.txt']);
    } finally {
      await pool.close();
    }
    expect(existsSync(join(target.home, 'fallback2', 'c.txt'))).toBe(true);
    expect(forwards(jump.log(), target.port)).toBe(forwardsBefore + 1);
    const notes = lines.filter((l) => l.includes('OpenSSH client not found'));
    expect(notes).toHaveLength(1);
    expect(notes[0]).toMatch(/built-in parser .*Include and Match are not honoured/);
  });
});

/** How many direct-tcpip (ProxyJump) channels to `port` the jump server's log records. */
function forwards(log: string, port: number): number {
  return log.split('\n').filter((l) => /direct-tcpip|direct_tcpip/.test(l) && l.includes(`port ${port}`))
    .length;
}
