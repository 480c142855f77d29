/**
 * Shell-style file name globs for Storage.list(): `*` matches any run of characters, `?` one character,
 * everything else is literal. As in the shell, a leading `.` must be matched explicitly, so hidden files
 * (including the temporary names used while writing) are not listed by `*`.
 */
export function globToRegExp(pattern: string): RegExp {
  let re = '';
  for (const ch of pattern) {
    if (ch === '*') re += '.*';
    else if (ch === '?') re += '.';
    else re += ch.replace(/[\\^$.|+()[\]{}/-]/g, '\\$&');
  }
  return new RegExp(`^${re}$`, 's');
}

/** Does the file name match the glob (leading-dot rule included)? */
export function matchGlob(pattern: string, name: string): boolean {
  if (name.startsWith('.') && !pattern.startsWith('.')) return false;
  return globToRegExp(pattern).test(name);
}

/** Names matching the pattern (all non-hidden names when it is omitted), sorted by code point. */
export function filterNames(names: Iterable<string>, pattern = '*'): string[] {
  const re = globToRegExp(pattern);
  const hiddenOk = pattern.startsWith('.');
  const out: string[] = [];
  for (const n of names) {
    if (n.startsWith('.') && !hiddenOk) continue;
    if (re.test(n)) out.push(n);
  }
  return out.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}
