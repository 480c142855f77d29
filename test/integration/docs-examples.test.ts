// Every example in README.md and docs/*.md runs as written, or says why not. The convention (docs/testing.md,
// "Examples in the docs"):
//
//   ```sh           a shell example: run here, offline, as written, from a copy of the repository's root
//   ```yaml/json    a data example: must parse
//   ```text/console output, listings, transcripts: not run
//   ```             (no language) the same as text, but it may not start with a command
//
// and, on the line right before the fence, a marker for a shell example that does not run here:
//
//   <!-- example: placeholder: WHY -->               (a real cloud, a user's own paths, a secret)
//   <!-- example: covered by TEST[, TEST]: WHAT -->  (run by those tests instead, e.g. builds under QEMU)
//
// The shell examples run in a "shadow" of the repository (a directory of symlinks to its entries, without
// work/), so they use the same ./build and configs but never touch the developer's work directory.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { lutimes, mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { ROOT } from '../helpers/cli.js';

interface Example {
  /** file:line of the opening fence */
  where: string;
  lang: string;
  body: string;
  marker?: string;
}

const COMMAND = /^\s*(\$ |\.\/build\b|npm |npx |aws |gpg |jq |export |curl |sudo )/;

function examples(): Example[] {
  const files = ['README.md', ...readdirSync(join(ROOT, 'docs')).filter((f) => f.endsWith('.md'))].map((f) =>
    f === 'README.md' ? f : `docs/${f}`,
  );
  const out: Example[] = [];
  for (const f of files) {
    const lines = readFileSync(join(ROOT, f), 'utf8').split('\n');
    for (let i = 0; i < lines.length; i++) {
      const open = /^(\s*)```(\w*)/.exec(lines[i]!);
      if (!open) continue;
      const indent = open[1]!;
      const body: string[] = [];
      let j = i + 1;
      for (; j < lines.length && !lines[j]!.startsWith(`${indent}\`\`\``); j++)
        body.push(lines[j]!.slice(indent.length));
      const prev = i > 0 ? /^\s*<!-- example: (.*?) -->\s*$/.exec(lines[i - 1]!) : null;
      out.push({
        where: `${f}:${i + 1}`,
        lang: open[2]!,
        body: `${body.join('\n')}\n`,
        ...(prev ? { marker: prev[1]! } : {}),
      });
      i = j;
    }
  }
  return out;
}

const all = examples();
const shell = all.filter((e) => ['sh', 'bash', 'shell'].includes(e.lang));
const runnable = shell.filter((e) => e.marker === undefined);

describe('examples in README.md and docs/', () => {
  it('are found (the extraction works)', () => {
    expect(all.length).toBeGreaterThan(40);
    expect(runnable.length).toBeGreaterThanOrEqual(2);
  });

  it('a block without a language does not start with a command (tag it sh, or text for output)', () => {
    const bad = all.filter((e) => e.lang === '' && COMMAND.test(e.body)).map((e) => e.where);
    expect(bad).toEqual([]);
  });

  it('markers are placeholders with a reason, or name tests that exist', () => {
    for (const e of all.filter((x) => x.marker !== undefined)) {
      const m = e.marker!;
      const covered = /^covered by (.+?): \S/.exec(m);
      if (covered) {
        for (const t of covered[1]!.split(/,\s*|\s+and\s+/)) {
          expect(existsSync(join(ROOT, t)), `${e.where}: ${t} does not exist`).toBe(true);
        }
      } else {
        expect(m, `${e.where}: "${m}" is neither "placeholder: WHY" nor "covered by TEST: WHAT"`).toMatch(
          /^placeholder: \S/,
        );
      }
    }
  });

  it('YAML and JSON examples parse', () => {
    for (const e of all.filter((x) => x.marker === undefined)) {
      if (e.lang === 'yaml' || e.lang === 'yml') {
        for (const d of parseAllDocuments(e.body)) {
          expect(d.errors.map((x) => x.message).join('; '), e.where).toBe('');
        }
      } else if (e.lang === 'json') {
        expect(() => JSON.parse(e.body), e.where).not.toThrow();
      }
    }
  });
});

describe('shell examples run as written (offline)', { timeout: 300_000 }, () => {
  let shadow: string;

  beforeAll(async () => {
    // compile once in the real tree (the shadow's ./build then finds dist/ up to date)
    execFileSync(join(ROOT, 'build'), ['--version'], { stdio: 'ignore' });
    shadow = await mkdtemp(join(tmpdir(), 'docs-examples-'));
    for (const name of readdirSync(ROOT)) {
      if (name === 'work' || name.startsWith('.dist')) continue;
      await symlink(join(ROOT, name), join(shadow, name));
      // old links: ./build's "newer than the last compile" check sees the links themselves, not their targets
      await lutimes(join(shadow, name), 0, 0);
    }
  });

  afterAll(async () => {
    if (shadow) await rm(shadow, { recursive: true, force: true });
  });

  it.each(runnable.map((e) => [e.where, e] as const))('%s', (_where, e) => {
    const r = spawnSync('bash', ['-euo', 'pipefail', '-c', e.body], {
      cwd: shadow,
      env: { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0' },
      encoding: 'utf8',
      timeout: 240_000,
    });
    expect(
      r.status,
      `${e.where}\n${e.body}\nstdout: ${r.stdout.slice(-1500)}\nstderr: ${r.stderr.slice(-1500)}`,
    ).toBe(0);
  });
});
