// Commands from configs (signing_cmd, release_cmd): split into arguments like a POSIX shell would (quotes and
// backslashes only: no expansion, no operators), fill {placeholders} per argument, run without a shell.
import type { Logger } from 'pino';
import { settingValues } from '../config/images-yaml.js';
import type { ImageConfig } from '../config/types.js';
import { UserError } from '../util/errors.js';

/** Tokens a user may expect a shell to interpret; run without a shell they would be plain arguments. */
const SHELL_OPERATORS = new Set([
  '|',
  '||',
  '&',
  '&&',
  ';',
  '>',
  '>>',
  '<',
  '<<',
  '2>',
  '2>>',
  '2>&1',
  '>&2',
]);

export interface CommandToken {
  /** the argument with quotes and escapes resolved */
  value: string;
  /** no part of it was quoted or escaped */
  bare: boolean;
}

/**
 * Split a command line into arguments: whitespace separates; '...' is literal; "..." is literal except for
 * \" \\ \$ \` (and backslash-newline, removed); a backslash outside quotes escapes the next character.
 * `what` names the setting in error messages (e.g. "release_cmd of aws_alpine-3.20.3-...").
 */
export function splitCommand(line: string, what: string): string[] {
  const tokens: CommandToken[] = [];
  let cur = '';
  let inToken = false;
  let bare = true;
  let i = 0;
  const push = () => {
    if (inToken) tokens.push({ value: cur, bare });
    cur = '';
    inToken = false;
    bare = true;
  };
  while (i < line.length) {
    const ch = line[i]!;
    if (ch === ' ' || ch === '\t' || ch === '\n' || ch === '\r') {
      push();
      i++;
    } else if (ch === "'") {
      const end = line.indexOf("'", i + 1);
      if (end < 0) throw new UserError(`${what}: unterminated single quote at column ${i + 1}: ${line}`);
      cur += line.slice(i + 1, end);
      inToken = true;
      bare = false;
      i = end + 1;
    } else if (ch === '"') {
      i++;
      inToken = true;
      bare = false;
      let closed = false;
      while (i < line.length) {
        const c = line[i]!;
        if (c === '"') {
          closed = true;
          i++;
          break;
        }
        if (c === '\\' && i + 1 < line.length) {
          const n = line[i + 1]!;
          if (n === '"' || n === '\\' || n === '$' || n === '`') {
            cur += n;
            i += 2;
            continue;
          }
          if (n === '\n') {
            i += 2;
            continue;
          }
        }
        cur += c;
        i++;
      }
      if (!closed) throw new UserError(`${what}: unterminated double quote: ${line}`);
    } else if (ch === '\\') {
      if (i + 1 >= line.length) throw new UserError(`${what}: trailing backslash: ${line}`);
      const n = line[i + 1]!;
      if (n !== '\n') {
        cur += n;
        inToken = true;
        bare = false;
      }
      i += 2;
    } else {
      cur += ch;
      inToken = true;
      i++;
    }
  }
  push();
  if (tokens.length === 0) throw new UserError(`${what}: empty command`);
  for (const t of tokens) {
    if (t.bare && SHELL_OPERATORS.has(t.value)) {
      throw new UserError(
        `${what}: '${t.value}' needs a shell, but commands run without one; ` +
          `quote it to pass it as an argument, or use: sh -c '...'`,
      );
    }
  }
  return tokens.map((t) => t.value);
}

/**
 * Fill `{name}` placeholders in one argument. `{{` and `}}` stand for literal braces.
 * An unknown placeholder or one whose value is not a string/number/boolean is an error naming it.
 */
export function fillArgument(arg: string, values: Record<string, unknown>, what: string): string {
  let out = '';
  let i = 0;
  while (i < arg.length) {
    const ch = arg[i]!;
    if (ch === '{' && arg[i + 1] === '{') {
      out += '{';
      i += 2;
    } else if (ch === '}' && arg[i + 1] === '}') {
      out += '}';
      i += 2;
    } else if (ch === '{') {
      const end = arg.indexOf('}', i + 1);
      const key = end < 0 ? '' : arg.slice(i + 1, end);
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) {
        throw new UserError(
          `${what}: bad placeholder in '${arg}' (use {name}, or {{ and }} for literal braces)`,
        );
      }
      const v = values[key];
      if (v === undefined || v === null) {
        throw new UserError(`${what}: placeholder {${key}} has no value for this image`);
      }
      if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean') {
        throw new UserError(`${what}: placeholder {${key}} is not a single value (it is a ${typeof v})`);
      }
      out += String(v);
      i = end + 1;
    } else {
      out += ch;
      i++;
    }
  }
  return out;
}

/** Split a configured command and fill each argument (a filled value never splits into more arguments). */
export function buildArgv(template: string, values: Record<string, unknown>, what: string): string[] {
  return splitCommand(template, what).map((a) => fillArgument(a, values, what));
}

const SECRET_FLAG = /^--?(passphrase|password|pass|token|secret)(-fd|-file)?$/i;
const SECRET_INLINE = /^(--?(?:passphrase|password|pass|token|secret))=/i;

/** A command line for logs and errors: shell-quoted, with values of passphrase/password/token flags masked. */
export function displayArgv(argv: readonly string[]): string {
  const out: string[] = [];
  let maskNext = false;
  for (const a of argv) {
    if (maskNext) {
      out.push('***');
      maskNext = false;
      continue;
    }
    const inline = SECRET_INLINE.exec(a);
    if (inline) {
      out.push(`${inline[1]}=***`);
      continue;
    }
    if (SECRET_FLAG.test(a) && !/-(fd|file)$/i.test(a)) maskNext = true;
    out.push(shellQuote(a));
  }
  return out.join(' ');
}

export function shellQuote(a: string): string {
  if (a !== '' && /^[A-Za-z0-9_@%+=:,./-]+$/.test(a)) return a;
  return `'${a.replace(/'/g, `'\\''`)}'`;
}

/** The last `lines` non-empty lines of some output, for error messages. */
export function tail(text: string, lines = 10): string {
  const all = text.split(/\r?\n/).filter((l) => l.trim() !== '');
  return all.slice(-lines).join('\n');
}

export interface RunOptions {
  cwd: string;
  env: NodeJS.ProcessEnv;
  log: Logger;
  /** names the command in errors, e.g. "release_cmd for aws_alpine-3.20.3-x86_64-bios-tiny-r0" */
  what: string;
  timeoutMs?: number;
}

/** Run argv without a shell; throw a UserError with the exit code and the tail of stderr when it fails. */
export async function runCommand(argv: readonly string[], opts: RunOptions): Promise<{ stdout: string }> {
  const [file, ...args] = argv;
  if (!file) throw new UserError(`${opts.what}: empty command`);
  const shown = displayArgv(argv);
  opts.log.debug({ cwd: opts.cwd }, `${opts.what}: running ${shown}`);
  // execa loads only when a command runs
  const { execa } = await import('execa');
  const r = await execa(file, args, {
    cwd: opts.cwd,
    env: opts.env,
    extendEnv: false,
    stdin: 'ignore',
    reject: false,
    stripFinalNewline: true,
    ...(opts.timeoutMs ? { timeout: opts.timeoutMs } : {}),
  });
  const stdout = typeof r.stdout === 'string' ? r.stdout : '';
  const stderr = typeof r.stderr === 'string' ? r.stderr : '';
  if (stdout) opts.log.debug(`${opts.what}: stdout: ${tail(stdout, 20)}`);
  if (stderr) opts.log.debug(`${opts.what}: stderr: ${tail(stderr, 20)}`);
  if (!r.failed) return { stdout };
  let why: string;
  if (r.code === 'ENOENT') why = `command not found: ${file}`;
  else if (r.code === 'EACCES') why = `not executable: ${file}`;
  else if (r.timedOut) why = `timed out after ${opts.timeoutMs} ms`;
  else if (r.signal) why = `killed by ${r.signal}`;
  else if (r.exitCode !== undefined) why = `exited with code ${r.exitCode}`;
  else why = r.shortMessage ?? 'failed';
  const errTail = tail(stderr) || tail(stdout);
  throw new UserError(`${opts.what} failed: \`${shown}\` ${why}${errTail ? `; stderr: ${errTail}` : ''}`);
}

/**
 * Values for {placeholders}: every resolved setting of the image as images.yaml shows it, plus derived names
 * (these win).
 */
export function placeholderValues(
  config: ImageConfig,
  extra: Record<string, string | number>,
): Record<string, unknown> {
  return { ...settingValues(config), ...extra };
}
