// Bad input, torn locks, interrupted runs and credentials in URLs, through the real CLI (issue #13 items 2, 6, 8, 9).
import { spawn } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_CONFIG_BYTES, MAX_CONFIG_DEPTH } from '../../src/config/limits.js';
import { judgeLock, processStart } from '../../src/util/lock.js';
import { redactText, redactUrl, restoreCredentials } from '../../src/util/redact.js';
import { BUILD, ROOT, runBuild } from '../helpers/cli.js';
import { makeOverlay, RELEASES_URL } from '../helpers/overlay.js';

let base: string;
let overlay: string;
beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), 'cib-hardening-'));
  overlay = await makeOverlay({ storageUrl: `file://${base}/store/{v_version}`, parent: base });
});
afterAll(async () => {
  await chmod(join(base, 'ro'), 0o755).catch(() => {});
  await rm(base, { recursive: true, force: true });
});

let n = 0;
async function work(): Promise<string> {
  const d = join(base, `work-${++n}`);
  await mkdir(d, { recursive: true });
  return d;
}

const configs = (w: string, ...args: string[]) =>
  runBuild(['configs', '--work-dir', w, '--releases-url', RELEASES_URL, '--custom', overlay, ...args]);

/** one line on stderr, naming what is wrong, no stack trace */
function oneLine(stderr: string): string {
  const lines = stderr.trim().split('\n');
  expect(lines).toHaveLength(1);
  expect(stderr).not.toMatch(/\n\s+at /);
  expect(stderr).not.toContain('unexpected error');
  return lines[0]!;
}

describe('flags: one clear line naming the flag, exit 2 (item 6)', () => {
  const cases: [string, string[], RegExp][] = [
    [
      'URL flag without a host',
      ['configs', '--releases-url', 'https:///releases.json'],
      /--releases-url https:\/\/\/releases.json: expected an http:\/\/, https:\/\/ or file:\/\/ URL/,
    ],
    [
      'URL flag with spaces',
      ['configs', '--cdn-url', 'https://dl cdn.example/alpine'],
      /--cdn-url https:\/\/dl cdn.example\/alpine: .* without spaces/,
    ],
    ['file URL without a path', ['configs', '--cdn-url', 'file://'], /--cdn-url file:\/\/: .*absolute path/],
    [
      'absurd --parallel',
      ['local', '--parallel', '99999999999999999999'],
      /--parallel 99999999999999999999: expected a whole number from 1 to 256/,
    ],
    [
      'a flag swallowing the next flag',
      ['state', '--work-dir', '--debug'],
      /--work-dir: expected a value, got the flag "--debug"/,
    ],
    [
      'a list flag swallowing the next flag',
      ['local', '--only', '--revise'],
      /--only: expected a value, got the flag "--revise"/,
    ],
  ];
  it.each(cases)('%s', async (_name, args, message) => {
    const r = await runBuild(args);
    expect(r.code).toBe(2);
    expect(oneLine(r.stderr)).toMatch(message);
  });

  it('a work directory that is a file, or that cannot be written', async () => {
    const file = join(base, 'a-file');
    await writeFile(file, 'x');
    let r = await runBuild(['state', '--work-dir', file]);
    expect(r.code).toBe(2);
    expect(oneLine(r.stderr)).toContain(`--work-dir ${file}: expected a directory, but it is a file`);

    r = await runBuild(['state', '--work-dir', join(file, 'sub')]);
    expect(r.code).toBe(2);
    expect(oneLine(r.stderr)).toContain(`but ${file} is a file`);

    r = await runBuild(['state'], { env: { BUILD_WORK_DIR: file } });
    expect(r.code).toBe(2);
    expect(oneLine(r.stderr)).toContain(`BUILD_WORK_DIR ${file}: expected a directory`);

    if (process.getuid?.() !== 0) {
      const ro = join(base, 'ro');
      await mkdir(ro, { recursive: true });
      await chmod(ro, 0o555);
      r = await runBuild(['state', '--work-dir', join(ro, 'work')]);
      expect(r.code).toBe(2);
      expect(oneLine(r.stderr)).toContain(`${ro} is not writable`);
    }
  });

  it('--only/--skip keys that match no variant are refused by configs too, exit 2', async () => {
    const w = await work();
    let r = await configs(w, '--only', 'x86_65');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--only x86_65: no variant has this dimension key; valid keys: .*x86_64/);
    r = await configs(w, '--only', 'x86_64', '--skip', 'uefi');
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--only x86_64 --skip uefi: together these select no variant');
    r = await configs(w, '--only', 'x86_64');
    expect(r.code).toBe(0);
  });

  it('an operating-system error on a path the user gave is one line naming it, not an "unexpected error"', async () => {
    const w = await work();
    expect((await configs(w)).code).toBe(0);
    // images.yaml replaced by a directory: reading it fails with EISDIR
    await rm(join(w, 'images.yaml'));
    await mkdir(join(w, 'images.yaml'));
    const r = await runBuild(['state', '--work-dir', w, '--releases-url', RELEASES_URL, '--custom', overlay]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(join(w, 'images.yaml'));
    expect(r.stderr).not.toContain('unexpected error');
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });
});

describe('config files: size and depth limits, no staging directory left (item 8)', () => {
  async function customWith(name: string, text: string): Promise<string> {
    const dir = await mkdtemp(join(base, 'big-'));
    await mkdir(join(dir, 'configs'), { recursive: true });
    await writeFile(join(dir, 'configs', name), text);
    await symlink(name, join(dir, 'configs', 'images.yaml'));
    return dir;
  }

  it('a deeply nested file is refused quickly, naming the file and the limit', async () => {
    const deep = `Default: ${'['.repeat(200_000)}${']'.repeat(200_000)}\n`;
    const dir = await customWith('deep.yaml', deep);
    const started = Date.now();
    const r = await runBuild([
      'configs',
      '--work-dir',
      await work(),
      '--releases-url',
      RELEASES_URL,
      '--custom',
      dir,
    ]);
    expect(Date.now() - started).toBeLessThan(20_000);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('deep.yaml');
    expect(r.stderr).toContain(`the limit is ${MAX_CONFIG_DEPTH} levels`);
    expect(r.stderr).not.toContain('unexpected error');
  });

  it('a huge file is refused, naming the file and the limit', async () => {
    const dir = await customWith('huge.yaml', `Default:\n  motd: "${'x'.repeat(MAX_CONFIG_BYTES)}"\n`);
    const r = await runBuild([
      'configs',
      '--work-dir',
      await work(),
      '--releases-url',
      RELEASES_URL,
      '--custom',
      dir,
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('huge.yaml');
    expect(r.stderr).toContain(`the limit is ${MAX_CONFIG_BYTES} bytes`);
  });

  it('an alias bomb is refused in bounded time', async () => {
    const lines = ['a0: &a0 [x, x, x, x, x, x, x, x, x, x]'];
    for (let i = 1; i < 9; i++)
      lines.push(
        `a${i}: &a${i} [${Array(10)
          .fill(`*a${i - 1}`)
          .join(', ')}]`,
      );
    const dir = await customWith('bomb.yaml', `Default:\n  ${lines.join('\n  ')}\n`);
    const started = Date.now();
    const r = await runBuild([
      'configs',
      '--work-dir',
      await work(),
      '--releases-url',
      RELEASES_URL,
      '--custom',
      dir,
    ]);
    expect(Date.now() - started).toBeLessThan(30_000);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/bomb.yaml.*MAX_CONFIG_VALUES/);
  });

  it('SIGTERM while configs run leaves no staging directory and no lock', async () => {
    const w = await work();
    // a slow releases URL (a FIFO nobody writes) holds the run after staging
    const fifo = join(base, `releases-${n}.fifo`);
    await new Promise<void>((res, rej) =>
      spawn('mkfifo', [fifo]).on('exit', (c) => (c === 0 ? res() : rej(new Error('mkfifo failed')))),
    );
    const child = spawn(
      BUILD,
      ['configs', '--work-dir', w, '--releases-url', `file://${fifo}`, '--custom', overlay],
      {
        cwd: ROOT,
        stdio: 'ignore',
      },
    );
    const deadline = Date.now() + 30_000;
    while (!(await readdir(w)).some((e) => e.startsWith('.stage-')) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
    }
    expect((await readdir(w)).some((e) => e.startsWith('.stage-'))).toBe(true);
    const exited = new Promise<NodeJS.Signals | null>((r) => child.on('exit', (_c, s) => r(s)));
    child.kill('SIGTERM');
    expect(await exited).toBe('SIGTERM');
    expect((await readdir(w)).filter((e) => e.startsWith('.stage-') || e === '.lock')).toEqual([]);
  });
});

describe('work directory lock: never half-written, never blocking without a live holder (item 2)', () => {
  it.each([
    ['empty', ''],
    ['torn', '{"pid": 12'],
    ['foreign', 'locked by bob\n'],
  ])('an %s lock file does not block the next run', async (_kind, content) => {
    const w = await work();
    expect((await configs(w)).code).toBe(0);
    await writeFile(join(w, '.lock'), content);
    const r = await runBuild(['state', '--work-dir', w, '--releases-url', RELEASES_URL]);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain('taking over the work directory lock');
    expect((await readdir(w)).filter((e) => e.startsWith('.lock'))).toEqual([]);
  });

  it('a holder whose pid now belongs to another process does not block', () => {
    const start = processStart(process.ppid);
    if (start === undefined) return; // no /proc: only liveness is checked
    const v = judgeLock(
      JSON.stringify({
        pid: process.ppid,
        host: hostname(),
        started: 'x',
        command: 'c',
        pidStart: start + 1,
      }),
    );
    expect(v.kind).toBe('stale');
    const same = judgeLock(
      JSON.stringify({ pid: process.ppid, host: hostname(), started: 'x', command: 'c', pidStart: start }),
    );
    expect(same.kind).toBe('held');
  });

  it('SIGKILL at any moment leaves either no lock or a complete one, and the next run proceeds', async () => {
    const w = await work();
    expect((await configs(w)).code).toBe(0);
    for (const delay of [40, 120, 250, 400]) {
      const child = spawn(BUILD, ['state', '--work-dir', w, '--releases-url', RELEASES_URL], {
        cwd: ROOT,
        stdio: 'ignore',
      });
      // listen before the delay: a fast run may have exited by itself before the kill
      const exited = new Promise((r) => child.on('exit', r));
      await new Promise((r) => setTimeout(r, delay));
      child.kill('SIGKILL');
      await exited;
      const lock = await readFile(join(w, '.lock'), 'utf8').catch(() => undefined);
      if (lock !== undefined) expect(JSON.parse(lock).pid).toBe(child.pid);
      const r = await runBuild(['state', '--work-dir', w, '--releases-url', RELEASES_URL]);
      expect(r.code).toBe(0);
    }
  });
});

describe('credentials in URLs are never printed, logged or written (item 9)', () => {
  it('redactUrl / redactText / restoreCredentials', () => {
    expect(redactUrl('https://user:s3cret@mirror.example/alpine')).toBe(
      'https://user:***@mirror.example/alpine',
    );
    expect(redactUrl('https://TOKEN123@mirror.example/x')).toBe('https://***@mirror.example/x');
    expect(redactUrl('ssh://builder@host/images')).toBe('ssh://builder@host/images');
    expect(redactUrl('https://b.s3.amazonaws.com/k?X-Amz-Signature=abc&x=1')).toBe(
      'https://b.s3.amazonaws.com/k?X-Amz-Signature=***&x=1',
    );
    expect(redactText('get "https://u:p@h/a" failed; see file:///x')).toBe(
      'get "https://u:***@h/a" failed; see file:///x',
    );
    expect(restoreCredentials('repo https://h/alpine/v3.20/main', ['https://u:p@h/alpine'])).toBe(
      'repo https://u:p@h/alpine/v3.20/main',
    );
  });

  it('credentials in --releases-url reach the server as Basic authorization, and appear nowhere', async () => {
    const releases = await readFile(join(ROOT, 'test', 'fixtures', 'releases.json'));
    let auth = '';
    const server = createServer((req, res) => {
      auth = String(req.headers.authorization ?? '');
      if (auth !== `Basic ${Buffer.from('builder:Pa55w0rd').toString('base64')}`) {
        res.writeHead(401).end();
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end(releases);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    try {
      const port = (server.address() as AddressInfo).port;
      const w = await work();
      const r = await runBuild([
        'configs',
        '--work-dir',
        w,
        '--releases-url',
        `http://builder:Pa55w0rd@127.0.0.1:${port}/releases.json`,
        '--custom',
        overlay,
        '--debug',
      ]);
      expect(r.code, r.stderr).toBe(0);
      expect(auth).toMatch(/^Basic /);
      expect(`${r.stdout}${r.stderr}`).not.toContain('Pa55w0rd');
    } finally {
      server.close();
    }
  });

  it('a password in --cdn-url and --releases-url appears nowhere: stderr, images.yaml, lock, work/', async () => {
    const w = await work();
    const secret = 'Sup3rS3cretPw';
    // a releases URL that fails, with the secret in it: the error message must show it redacted
    let r = await runBuild([
      'configs',
      '--work-dir',
      w,
      '--releases-url',
      `https://builder:${secret}@127.0.0.1:9/releases.json`,
      '--custom',
      overlay,
    ]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('builder:***@127.0.0.1:9');
    expect(`${r.stdout}${r.stderr}`).not.toContain(secret);

    r = await runBuild([
      'configs',
      '--work-dir',
      w,
      '--releases-url',
      RELEASES_URL,
      '--cdn-url',
      `https://builder:${secret}@mirror.example/alpine`,
      '--custom',
      overlay,
      '--debug',
    ]);
    expect(r.code).toBe(0);
    expect(`${r.stdout}${r.stderr}`).not.toContain(secret);
    const yaml = await readFile(join(w, 'images.yaml'), 'utf8');
    // configs hold the CDN URL without its credentials (the build puts them back for its downloads)
    expect(yaml).toContain('https://mirror.example/alpine/');
    expect(yaml).not.toContain('builder');
    expect(yaml).not.toContain(secret);
    const grep = spawn('grep', ['-r', '-l', secret, w]);
    const found = await new Promise<string>((res) => {
      let out = '';
      grep.stdout.on('data', (d) => {
        out += String(d);
      });
      grep.on('exit', () => res(out));
    });
    expect(found).toBe('');
  });
});
