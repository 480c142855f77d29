// Per-variant progress of `build local` (and, with its own states, of `build test`): each variant's current
// state and elapsed time. On a terminal a live status block (one line per variant) is redrawn below the log;
// otherwise every state change is a plain log line, with a periodic summary while builds run.
import type { Logger } from 'pino';
import type { HumanLog } from '../util/human-log.js';
import { liveArea } from '../util/log.js';

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

/** The phases of one boot test (`build test`), as its live status shows them. */
export type TestState =
  | 'queued'
  | 'preparing'
  | 'booting'
  | 'waiting for ssh'
  | 'checking'
  | 'powering off'
  | 'passed'
  | 'failed';

/** States after which a variant's clock stops. */
function finished(state: string): boolean {
  return state === 'done' || state === 'passed' || state === 'failed';
}

interface Entry<S extends string> {
  state: S | 'queued';
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

export class Progress<S extends string = BuildState> {
  private readonly entries = new Map<string, Entry<S>>();
  private timer: NodeJS.Timeout | undefined;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly live: HumanLog | undefined;

  constructor(
    keys: readonly string[],
    log: Logger,
    now: () => number = Date.now,
    live: HumanLog | undefined = liveArea(log),
    /** only draw the status block, never log (the caller logs each outcome itself) */
    private readonly quiet = false,
  ) {
    this.log = log;
    this.now = now;
    this.live = live;
    for (const k of keys) this.entries.set(k, { state: 'queued' });
  }

  /** The live status block: one line per variant, key, state and elapsed time. */
  statusLines(): string[] {
    const t = this.now();
    const width = Math.max(...[...this.entries.keys()].map((k) => k.length));
    return [...this.entries].map(([k, e]) => {
      const el = e.started === undefined ? '' : formatElapsed((e.finished ?? t) - e.started);
      const detail = e.detail && e.state !== 'failed' ? ` (${e.detail})` : '';
      return `  ${k.padEnd(width)}  ${`${e.state}${detail}`.padEnd(28)} ${el}`;
    });
  }

  /** Whether the live status block is shown (a terminal). */
  get isLive(): boolean {
    return this.live !== undefined;
  }

  set(key: string, state: S, detail?: string): void {
    const e: Entry<S> = this.entries.get(key) ?? { state: 'queued' };
    if (e.state === state && e.detail === detail) return;
    const t = this.now();
    if (e.started === undefined && state !== 'queued') e.started = t;
    e.state = state;
    e.detail = detail;
    if (finished(state)) e.finished = t;
    this.entries.set(key, e);
    const elapsed = formatElapsed(t - (e.started ?? t));
    const msg = `${key}: ${state}${detail ? ` (${detail})` : ''} [${elapsed}]`;
    if (this.live) {
      // the status block shows every change; the log keeps the outcome
      this.live.setStatus(this.statusLines());
      if (this.quiet) return;
      if (state === 'done') this.log.info({ variant: key, state, elapsed }, msg);
      else if (state !== 'failed') this.log.debug({ variant: key, state, elapsed }, msg);
      return;
    }
    if (this.quiet) return;
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

  /** Log the summary every `ms` while builds run (on a terminal: redraw the status block every second). */
  startTicker(ms: number): void {
    if (this.live && !this.timer) {
      this.live.setStatus(this.statusLines());
      this.timer = setInterval(() => this.live?.setStatus(this.statusLines()), 1000);
      this.timer.unref();
      return;
    }
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
    this.live?.setStatus([]);
  }
}
