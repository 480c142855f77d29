// Per-variant progress of `build local`: each variant's current state and elapsed time, logged on every state
// change and as a periodic summary while builds run.
import type { Logger } from 'pino';

export type BuildState =
  | 'queued'
  | 'preparing'
  | 'iso'
  | 'minirootfs'
  | 'chroot'
  | 'disk'
  | 'firmware'
  | 'accelerator'
  | 'booting'
  | 'waiting for ssh'
  | 'provisioning'
  | 'shutting down'
  | 'converting'
  | 'compressing'
  | 'checksum'
  | 'done'
  | 'failed';

interface Entry {
  state: BuildState;
  detail?: string;
  started?: number;
  finished?: number;
}

export function formatElapsed(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  const m = Math.floor(s / 60);
  const h = Math.floor(m / 60);
  if (h > 0) return `${h}h${String(m % 60).padStart(2, '0')}m${String(s % 60).padStart(2, '0')}s`;
  if (m > 0) return `${m}m${String(s % 60).padStart(2, '0')}s`;
  return `${s}s`;
}

/** Map a line of Packer's output to the state it announces, if any. */
export function stateFromPackerLine(line: string): { state: BuildState; detail?: string } | undefined {
  if (/Starting VM, booting from CD-ROM|Starting VM, booting disk image|Starting VM/.test(line))
    return { state: 'booting' };
  if (/Waiting for SSH to become available/.test(line)) return { state: 'waiting for ssh' };
  const prov = /Provisioning with shell script: (\S+)/.exec(line);
  if (prov) return { state: 'provisioning', detail: prov[1]?.split('/').pop() };
  if (/Uploading .* => \/tmp\//.test(line)) return { state: 'provisioning', detail: 'uploading script data' };
  if (/Gracefully halting virtual machine/.test(line)) return { state: 'shutting down' };
  return undefined;
}

export class Progress {
  private readonly entries = new Map<string, Entry>();
  private timer: NodeJS.Timeout | undefined;
  private readonly log: Logger;
  private readonly now: () => number;

  constructor(keys: readonly string[], log: Logger, now: () => number = Date.now) {
    this.log = log;
    this.now = now;
    for (const k of keys) this.entries.set(k, { state: 'queued' });
  }

  set(key: string, state: BuildState, detail?: string): void {
    const e = this.entries.get(key) ?? { state: 'queued' };
    if (e.state === state && e.detail === detail) return;
    const t = this.now();
    if (e.started === undefined && state !== 'queued') e.started = t;
    e.state = state;
    e.detail = detail;
    if (state === 'done' || state === 'failed') e.finished = t;
    this.entries.set(key, e);
    const elapsed = formatElapsed(t - (e.started ?? t));
    const msg = `${key}: ${state}${detail ? ` (${detail})` : ''} [${elapsed}]`;
    if (state === 'failed') this.log.error({ variant: key, state, elapsed }, msg);
    else this.log.info({ variant: key, state, elapsed }, msg);
  }

  elapsedMs(key: string): number {
    const e = this.entries.get(key);
    if (!e?.started) return 0;
    return (e.finished ?? this.now()) - e.started;
  }

  /** One line per variant: "key state elapsed". */
  summary(): string {
    const t = this.now();
    const parts: string[] = [];
    for (const [k, e] of this.entries) {
      const el = e.started === undefined ? '-' : formatElapsed((e.finished ?? t) - e.started);
      parts.push(`${k}: ${e.state}${e.detail ? ` (${e.detail})` : ''} ${el}`);
    }
    return parts.join('; ');
  }

  counts(): Record<string, number> {
    const c: Record<string, number> = {};
    for (const e of this.entries.values()) c[e.state] = (c[e.state] ?? 0) + 1;
    return c;
  }

  /** Log the summary every `ms` while builds run. */
  startTicker(ms: number): void {
    if (ms <= 0 || this.timer) return;
    this.timer = setInterval(
      () => this.log.info({ progress: this.counts() }, `progress: ${this.summary()}`),
      ms,
    );
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}
