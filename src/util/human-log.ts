// The human log format: one line per message, "HH:MM:SS message" (warnings and errors say so), no copy of the
// message's fields (those are for --log-format json), wrapped to the terminal's width with an indent, and a
// live status area (e.g. per-variant build status) that stays at the bottom of a terminal while lines scroll
// above it. Off a terminal, the live area is never drawn: callers log plain lines instead.

const LEVELS: Record<number, { label: string; color: string }> = {
  10: { label: 'trace: ', color: '\x1b[90m' },
  20: { label: 'debug: ', color: '\x1b[90m' },
  30: { label: '', color: '' },
  40: { label: 'warning: ', color: '\x1b[33m' },
  50: { label: 'error: ', color: '\x1b[31m' },
  60: { label: 'fatal: ', color: '\x1b[31m' },
};

export interface HumanLogOptions {
  color: boolean;
  /** the terminal's width (undefined: no wrapping, not a terminal) */
  width?: number;
  write: (s: string) => void;
}

function hhmmss(t: number | string | undefined): string {
  const d = new Date(typeof t === 'number' || typeof t === 'string' ? t : Date.now());
  return d.toISOString().slice(11, 19);
}

/** Wrap one message to `width` columns, continuation lines indented by `indent`. */
export function wrapText(text: string, width: number, indent: number): string[] {
  const out: string[] = [];
  for (const para of text.split('\n')) {
    let line = '';
    let room = width;
    for (const word of para.split(' ')) {
      if (line && line.length + 1 + word.length > room) {
        out.push(line);
        line = word;
        room = width - indent;
      } else line = line ? `${line} ${word}` : word;
    }
    out.push(line);
    room = width - indent;
  }
  return out.map((l, i) => (i === 0 ? l : `${' '.repeat(indent)}${l}`));
}

/** Format one pino JSON line for a person. */
export function formatHuman(json: string, opts: { color: boolean; width?: number }): string {
  let o: { level?: number; time?: number; msg?: string; err?: { message?: string; stack?: string } };
  try {
    o = JSON.parse(json) as typeof o;
  } catch {
    return json.trimEnd();
  }
  const lv = LEVELS[o.level ?? 30] ?? LEVELS[30]!;
  let msg = o.msg ?? '';
  // --debug: an unexpected error's stack
  if (o.err?.stack && (o.level ?? 30) >= 50 && (o.level ?? 30) !== 30 && !msg.includes(o.err.stack)) {
    msg = `${msg}\n${o.err.stack}`;
  }
  const head = `${hhmmss(o.time)} `;
  const body = `${lv.label}${msg}`;
  const lines = opts.width ? wrapText(`${head}${body}`, opts.width, head.length) : [`${head}${body}`];
  const text = lines.join('\n');
  if (!opts.color || !lv.color) return text;
  return `${lv.color}${text}\x1b[0m`;
}

/**
 * A pino destination for people. With a width (a terminal), `setStatus` keeps a block of status lines at the
 * bottom: each log line clears it, prints, and draws it again.
 */
export class HumanLog {
  private readonly opts: HumanLogOptions;
  private status: string[] = [];
  private drawn = 0;
  constructor(opts: HumanLogOptions) {
    this.opts = opts;
  }

  /** pino calls this with one JSON line */
  write(s: string): void {
    this.clear();
    this.opts.write(`${formatHuman(s, this.opts)}\n`);
    this.draw();
  }

  /** whether a live status area can be shown (a terminal) */
  get live(): boolean {
    return this.opts.width !== undefined;
  }

  setStatus(lines: readonly string[]): void {
    if (!this.live) return;
    const w = this.opts.width ?? 80;
    this.clear();
    this.status = lines.map((l) => (l.length > w - 1 ? `${l.slice(0, w - 2)}…` : l));
    this.draw();
  }

  private clear(): void {
    if (this.drawn > 0) {
      // up to the first status line, then clear to the end of the screen
      this.opts.write(`\x1b[${this.drawn}F\x1b[J`);
      this.drawn = 0;
    }
  }

  private draw(): void {
    if (this.status.length === 0) return;
    this.opts.write(`${this.status.join('\n')}\n`);
    this.drawn = this.status.length;
  }
}
