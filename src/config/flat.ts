// The flat (joined string) forms of the typed lists and maps, as alpine-cloud-images writes them to images.yaml and
// passes them to its setup scripts: used by the images.yaml serializer and its reader (images-yaml.ts), by
// normalisation, and by the setup scripts' environment (src/local/variant.ts scriptEnvironment). Nothing else
// knows these forms.
import type { Repository, RunlevelServices } from './types.js';

/** The original's flat (joined string) forms of the typed lists and maps: images.yaml and the setup scripts. */
export const flat = {
  /** /etc/apk/repositories lines: "url", "#url" (disabled), "@tag url" (tagged) */
  repos: (repos: readonly Repository[]): string =>
    repos.map((r) => (!r.enabled ? `#${r.url}` : r.tag !== null ? `@${r.tag} ${r.url}` : r.url)).join('\n'),
  /** runlevel=service,service ... */
  services: (levels: RunlevelServices): string => {
    let out = '';
    for (const lvl in levels) out += `${out ? ' ' : ''}${lvl}=${levels[lvl]!.join(',')}`;
    return out;
  },
  words: (list: readonly string[]): string => list.join(' '),
  /** kernel_modules (comma-separated, as mkinitfs.conf wants them) */
  commas: (list: readonly string[]): string => list.join(','),
  diskSize: (mib: number): string => `${mib}M`,
} as const;

const WHITESPACE = /\s+/;
const TAGGED = /^@(\S+)\s+(\S+)$/;
/** whitespace other than single spaces between words */
const ODD_SPACE = /\s\s|[^\S ]|^\s|\s$/;
export const words = (s: string): string[] => {
  if (s === '') return [];
  return ODD_SPACE.test(s) ? s.split(WHITESPACE).filter(Boolean) : s.split(' ');
};

/** /etc/apk/repositories text (flat.repos) back into its entries. */
export function parseRepos(text: string): Repository[] {
  const out: Repository[] = [];
  for (const raw of text.split('\n')) {
    const l = raw.trim();
    if (!l) continue;
    if (l.charCodeAt(0) === 35 /* # */) {
      out.push({ url: l.slice(1), enabled: false, tag: null });
      continue;
    }
    const m = l.charCodeAt(0) === 64 /* @ */ ? TAGGED.exec(l) : null;
    out.push(m ? { url: m[2]!, enabled: true, tag: m[1]! } : { url: l, enabled: true, tag: null });
  }
  return out;
}
