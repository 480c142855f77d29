// SSH into the booted guest as its login user with the key the test injected (in-process, ssh2: the private
// key never reaches argv or a file other than the run's own 0600 one).
import ssh2 from 'ssh2';

const { Client, utils } = ssh2;

export interface KeyPair {
  /** OpenSSH private key */
  privateKey: string;
  /** "ssh-ed25519 AAAA… comment" */
  publicKey: string;
}

/** A fresh ed25519 key pair for one boot test. */
export function testKeyPair(comment: string): KeyPair {
  const k = utils.generateKeyPairSync('ed25519', { comment });
  return { privateKey: k.private, publicKey: k.public.trim() };
}

export interface ExecResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface GuestSession {
  exec(command: string, timeoutMs?: number): Promise<ExecResult>;
  close(): void;
}

export interface ConnectOptions {
  port: number;
  user: string;
  privateKey: string;
  /** give up after this long per attempt */
  readyTimeoutMs?: number;
}

/** One SSH connection attempt; rejects with the reason (refused, reset, auth failed, timeout). */
export function connectOnce(o: ConnectOptions): Promise<GuestSession> {
  return new Promise((resolve, reject) => {
    const c = new Client();
    let settled = false;
    c.on('ready', () => {
      settled = true;
      resolve(session(c));
    });
    c.on('error', (err) => {
      if (!settled) {
        settled = true;
        reject(err);
      }
      c.end();
    });
    c.on('close', () => {
      if (!settled) {
        settled = true;
        reject(new Error('connection closed'));
      }
    });
    c.connect({
      host: '127.0.0.1',
      port: o.port,
      username: o.user,
      privateKey: o.privateKey,
      readyTimeout: o.readyTimeoutMs ?? 15_000,
      // a throwaway VM: its host key is new on every boot, nothing to pin
      hostVerifier: () => true,
      keepaliveInterval: 5000,
    });
  });
}

function session(c: InstanceType<typeof Client>): GuestSession {
  return {
    close: () => c.end(),
    exec: (command, timeoutMs = 60_000) =>
      new Promise<ExecResult>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`command timed out after ${timeoutMs} ms`)),
          timeoutMs,
        );
        c.exec(command, (err, stream) => {
          if (err) {
            clearTimeout(timer);
            reject(err);
            return;
          }
          let stdout = '';
          let stderr = '';
          let code: number | null = null;
          stream.on('data', (b: Buffer) => {
            stdout += b.toString('utf8');
          });
          stream.stderr.on('data', (b: Buffer) => {
            stderr += b.toString('utf8');
          });
          stream.on('exit', (c2: number | null) => {
            code = c2;
          });
          stream.on('close', () => {
            clearTimeout(timer);
            resolve({ code, stdout, stderr });
          });
        });
      }),
  };
}

/** Why an attempt failed, in a few words (for the SSH check's detail). */
export function connectError(err: unknown): string {
  const e = err as { level?: string; code?: string; message?: string };
  if (e.level === 'client-authentication') return 'the key was refused (authentication failed)';
  if (e.code) return `${e.code} ${e.message ?? ''}`.trim();
  return e.message ?? String(err);
}
