/**
 * s3rver (a local S3 look-alike) in its own Node process on 127.0.0.1, for tests and benchmarks.
 * It needs `--openssl-legacy-provider` (paged listings use DES), hence the separate process.
 *
 *   const s3 = await startS3rver({ buckets: ['images'] });
 *   const pool = createStoragePool({ log, env: { ...process.env, ...s3.env } });
 *   pool.get('s3://images/some/prefix');
 *   await s3.stop();
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const ROOT = join(import.meta.dirname, '..', '..');

export interface S3rverHandle {
  /** http://127.0.0.1:port */
  endpoint: string;
  port: number;
  buckets: string[];
  /** where s3rver keeps the objects */
  dir: string;
  /** AWS environment pointing the SDK (and the storage pool) at this server, isolated from ~/.aws */
  env: Record<string, string>;
  /** settings for an S3Client of your own (tests that tamper with objects directly) */
  clientConfig: {
    endpoint: string;
    region: string;
    forcePathStyle: true;
    credentials: { accessKeyId: string; secretAccessKey: string };
    requestChecksumCalculation: 'WHEN_REQUIRED';
    responseChecksumValidation: 'WHEN_REQUIRED';
  };
  log(): string;
  stop(): Promise<void>;
}

const SERVER = `
import S3rver from 's3rver';
const [dir, buckets] = [process.env.S3RVER_DIR, JSON.parse(process.env.S3RVER_BUCKETS)];
const server = new S3rver({
  address: '127.0.0.1', port: 0, silent: true, directory: dir,
  configureBuckets: buckets.map((name) => ({ name })),
});
const addr = await server.run();
process.stdout.write(JSON.stringify({ port: addr.port }) + '\\n');
const stop = () => server.close().finally(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
process.stdin.on('end', stop);
process.stdin.resume();
`;

export async function startS3rver(opts: { buckets?: string[] } = {}): Promise<S3rverHandle> {
  const buckets = opts.buckets ?? ['test'];
  const dir = await mkdtemp(join(tmpdir(), 's3rver-'));
  // stdin stays open as a lifeline: if this process dies, s3rver sees EOF and exits
  const child: ChildProcess = spawn(
    process.execPath,
    ['--openssl-legacy-provider', '--input-type=module', '-e', SERVER],
    {
      cwd: ROOT,
      env: { ...process.env, S3RVER_DIR: dir, S3RVER_BUCKETS: JSON.stringify(buckets) },
      stdio: ['pipe', 'pipe', 'pipe'],
    },
  );
  let log = '';
  child.stderr?.on('data', (d: Buffer) => {
    log += d.toString('utf8');
  });
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`s3rver did not start within 15 s:\n${log}`)), 15_000);
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString('utf8');
      const line = out.split('\n')[0];
      if (out.includes('\n') && line) {
        clearTimeout(timer);
        try {
          resolve((JSON.parse(line) as { port: number }).port);
        } catch {
          reject(new Error(`s3rver printed ${line}`));
        }
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`s3rver exited (${code}):\n${log}`));
    });
  }).catch(async (err) => {
    child.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
    throw err;
  });
  const endpoint = `http://127.0.0.1:${port}`;
  let stopped = false;
  return {
    endpoint,
    port,
    buckets,
    dir,
    env: {
      AWS_ENDPOINT_URL_S3: endpoint,
      AWS_ACCESS_KEY_ID: 'S3RVER',
      AWS_SECRET_ACCESS_KEY: 'S3RVER',
      AWS_REGION: 'us-east-1',
      AWS_PROFILE: '',
      AWS_CONFIG_FILE: '/dev/null',
      AWS_SHARED_CREDENTIALS_FILE: '/dev/null',
      AWS_EC2_METADATA_DISABLED: 'true',
    },
    clientConfig: {
      endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    },
    log: () => log,
    async stop() {
      if (stopped) return;
      stopped = true;
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
        await exited;
        clearTimeout(timer);
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}
