/**
 * moto_server (the Python AWS look-alike, `pip install moto[server]`) on 127.0.0.1 with a random port: a
 * third-party S3 (atomic objects, conditional writes) and EC2 for contract tests against our own emulator.
 *
 *   const reason = motoUnavailableReason();   // skip with it when moto is not installed
 *   const moto = await startMoto();
 *   ...moto.env (AWS_ENDPOINT_URL, credentials, region)
 *   await moto.stop();
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { freePort } from './sshd.js';

export interface MotoHandle {
  endpoint: string;
  port: number;
  /** AWS environment pointing the SDK at moto for every service, isolated from ~/.aws */
  env: Record<string, string>;
  log(): string;
  stop(): Promise<void>;
}

let cachedReason: string | undefined | null = null;

/** Why moto_server cannot run here, or undefined when it can. */
export function motoUnavailableReason(): string | undefined {
  if (cachedReason !== null) return cachedReason;
  const r = spawnSync('moto_server', ['--help'], { stdio: 'ignore', timeout: 20_000 });
  cachedReason =
    r.error || r.status !== 0 ? 'moto_server is not installed (pip install "moto[server]")' : undefined;
  return cachedReason;
}

export async function startMoto(): Promise<MotoHandle> {
  const port = await freePort();
  const child: ChildProcess = spawn('moto_server', ['-H', '127.0.0.1', '-p', String(port)], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, MOTO_ALLOW_NONEXISTENT_REGION: 'true' },
  });
  let out = '';
  child.stdout?.on('data', (d) => {
    out += String(d);
  });
  child.stderr?.on('data', (d) => {
    out += String(d);
  });
  const endpoint = `http://127.0.0.1:${port}`;
  const onExit = () => child.kill('SIGKILL');
  process.on('exit', onExit);
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`moto_server exited (${child.exitCode}):\n${out}`);
    try {
      const r = await fetch(`${endpoint}/moto-api/`, { signal: AbortSignal.timeout(1000) });
      if (r.status < 500) break;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`moto_server did not answer on ${endpoint}:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    endpoint,
    port,
    env: {
      AWS_ENDPOINT_URL: endpoint,
      AWS_ACCESS_KEY_ID: 'testing',
      AWS_SECRET_ACCESS_KEY: 'testing',
      AWS_REGION: 'us-east-1',
      AWS_CONFIG_FILE: '/dev/null',
      AWS_SHARED_CREDENTIALS_FILE: '/dev/null',
    },
    log: () => out,
    async stop() {
      process.removeListener('exit', onExit);
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(timer);
    },
  };
}
