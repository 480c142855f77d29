// Alpine's L: field is meant to be an SPDX license expression, but it holds names the SPDX list does not know
// ("Public-Domain", "custom") and, in old packages, space-separated lists. SBOMs need valid expressions: known ids
// stay, unknown ones become LicenseRef-<name> (declared in the SPDX document), and what cannot be parsed at all
// becomes one LicenseRef for the whole text.
import { SPDX } from '@cyclonedx/cyclonedx-library';

export interface License {
  /** a valid SPDX license expression, or undefined when the package has no license field */
  expression?: string;
  /** LicenseRef-* ids used in `expression`, with the text they stand for */
  refs: Map<string, string>;
  /** a single license id or LicenseRef (no operator) */
  single: boolean;
}

const OPS = new Set(['AND', 'OR', 'WITH']);

function refId(text: string): string {
  return `LicenseRef-${text.replace(/[^A-Za-z0-9.-]+/g, '-').replace(/^-+|-+$/g, '') || 'unknown'}`;
}

function isId(tok: string): boolean {
  const bare = tok.replace(/\+$/, '');
  return SPDX.isSupportedSpdxId(tok) || SPDX.isSupportedSpdxId(bare);
}

/** Parse an apk license field into an SPDX license expression. */
export function apkLicense(raw: string | undefined): License {
  const refs = new Map<string, string>();
  const text = raw?.trim() ?? '';
  if (!text) return { refs, single: false };
  const tokens = text
    .replace(/([()])/g, ' $1 ')
    .split(/\s+/)
    .filter(Boolean);
  // grammar check: operand (op operand)*, balanced parentheses, WITH followed by an exception name
  const out: string[] = [];
  let depth = 0;
  let expectOperand = true;
  let ok = true;
  let afterWith = false;
  for (const tok of tokens) {
    if (tok === '(') {
      if (!expectOperand) ok = false;
      depth++;
      out.push(tok);
    } else if (tok === ')') {
      if (expectOperand || depth === 0) ok = false;
      depth--;
      out.push(tok);
    } else if (OPS.has(tok)) {
      if (expectOperand) ok = false;
      afterWith = tok === 'WITH';
      expectOperand = true;
      out.push(tok);
    } else {
      if (!expectOperand) ok = false;
      expectOperand = false;
      if (afterWith) {
        out.push(tok);
        afterWith = false;
      } else if (isId(tok) || tok.startsWith('LicenseRef-')) {
        out.push(tok);
      } else {
        const id = refId(tok);
        refs.set(id, tok);
        out.push(id);
      }
    }
    if (!ok) break;
  }
  if (!ok || depth !== 0 || expectOperand) {
    const id = refId(text);
    return { expression: id, refs: new Map([[id, text]]), single: true };
  }
  return { expression: out.join(' '), refs, single: out.length === 1 };
}
