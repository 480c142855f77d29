// `{name}` placeholders, filled the way Python's str.format fills them in alpine-cloud-images:
// `{{` and `}}` are literal braces; a name without a text value is an error (the caller names the setting).

export class PlaceholderError extends Error {
  readonly placeholder: string;
  constructor(placeholder: string, why: string) {
    super(`placeholder {${placeholder}} ${why}`);
    this.placeholder = placeholder;
  }
}

/** returned by a lookup function for a name it does not know */
export const MISSING: unique symbol = Symbol('missing');

export type Lookup = (name: string) => unknown;

export function formatTemplate(template: string, values: Readonly<Record<string, unknown>> | Lookup): string {
  if (!template.includes('{') && !template.includes('}')) return template;
  const lookup: Lookup =
    typeof values === 'function' ? values : (name) => (Object.hasOwn(values, name) ? values[name] : MISSING);
  return template.replace(/\{\{|\}\}|\{([^{}]*)\}/g, (whole, name: string | undefined) => {
    if (whole === '{{') return '{';
    if (whole === '}}') return '}';
    const key = name ?? '';
    const v = lookup(key);
    if (v === MISSING) throw new PlaceholderError(key, 'is unknown');
    if (v !== null && typeof v === 'object') throw new PlaceholderError(key, 'is a list or map, not text');
    return pyStr(v);
  });
}

/** str() of a scalar as Python prints it (True/False/None), since configs were written against Python. */
function pyStr(v: unknown): string {
  if (v === null || v === undefined) return 'None';
  if (v === true) return 'True';
  if (v === false) return 'False';
  return String(v);
}
