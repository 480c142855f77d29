// Reading Packer's output: terminal escape codes are stripped from every line before anything looks at it
// (with colour on, Packer wraps its error line in SGR codes, which used to hide it from the failure summary
// and leak into state labels and build.log), and a failed build is explained by Packer's own error plus the
// last lines the builder VM printed on its console.
import { readFile } from 'node:fs/promises';

// CSI sequences (colours, cursor moves), OSC sequences (titles, hyperlinks), charset designations and
// two-byte escapes
const ESCAPES =
  /\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()*+][0-9A-Za-z]|\x1b[@-Z\\-_]|\x9b[0-?]*[ -/]*[@-~]/g;
// other C0 controls except tab (a console also prints \r and backspaces)
const CONTROLS = /[\x00-\x08\x0b-\x1f\x7f]/g;

/** The text of a terminal line: escape sequences and control characters removed. */
export function stripTerminal(line: string): string {
  return line.replace(ESCAPES, '').replace(CONTROLS, '');
}

/** Packer's UI output (-timestamp-ui): "2026-01-02T03:04:05Z: ==> alpine.qemu.alpine: text". */
const UI_LINE = /^\d{4}-\d\d-\d\dT[\d:]+Z: (?:==> |--> |\s+)?(?:[\w.-]+: )?(.*)$/;

/** UI lines that say nothing about why a build failed. */
const NOISE =
  /^(Provisioning step had errors|Deleting output directory|Running the cleanup provisioner|Gracefully halting|Waiting for|Build '|Some builds didn't|Builds finished|Wait completed|==>\s*$)/;

/** Lines of Packer's debug log that never reach build.log (VNC typing logs typed text key by key). */
const SECRET_LINES = /Sending char '|Special code '|Sending (?:key|keys?) /;

/** Collects what a failure message needs while Packer's (already stripped) lines go by. */
export class PackerFailure {
  private error = '';
  private readonly recent: string[] = [];
  private readonly keep: number;
  constructor(keep = 3) {
    this.keep = keep;
  }

  /** false for lines that must not be logged */
  static loggable(line: string): boolean {
    return !SECRET_LINES.test(line);
  }

  add(line: string): void {
    const ui = UI_LINE.exec(line);
    const text = ui?.[1]?.trim();
    if (!text) return;
    const err = /errored after [^:]*: (.*)$/.exec(text) ?? /^Error: (.*)$/.exec(text);
    if (err?.[1]) this.error = err[1];
    else if (!NOISE.test(text)) {
      this.recent.push(text);
      if (this.recent.length > this.keep) this.recent.shift();
    }
  }

  /** Packer's error ("" when it printed none) and its last meaningful UI lines. */
  get summary(): { error: string; recent: string[] } {
    return { error: this.error, recent: [...this.recent] };
  }
}

/** The last `n` non-empty lines of the builder VM's console log, as plain text ([] when there is none). */
export async function consoleTail(path: string | undefined, n = 8): Promise<string[]> {
  if (!path) return [];
  let text: string;
  try {
    text = await readFile(path, 'latin1');
  } catch {
    return [];
  }
  return text
    .split(/\r?\n|\r/)
    .map((l) => stripTerminal(l).trimEnd())
    .filter((l) => l.trim())
    .slice(-n);
}

/** The message of a failed `packer build`: exit code, Packer's error, its last output, the VM's last lines. */
export function packerFailureMessage(
  exitCode: number | undefined,
  f: { error: string; recent: string[] },
  consoleLines: readonly string[],
): string {
  const parts = [`packer build failed (exit ${exitCode ?? 'signal'})`];
  if (f.error) parts.push(`: ${f.error.slice(0, 600)}`);
  if (f.recent.length) parts.push(`\n  last output: ${f.recent.join(' | ').slice(0, 600)}`);
  if (consoleLines.length) {
    parts.push(
      `\n  last lines on the builder VM's console:\n${consoleLines.map((l) => `    ${l.slice(0, 200)}`).join('\n')}`,
    );
  }
  return parts.join('');
}
