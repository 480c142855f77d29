// `{name}` placeholders, filled the way Python's str.format fills them in alpine-cloud-images:
// `{{` and `}}` are literal braces; a name without a text value is an error (the caller names the setting).

export class PlaceholderError extends Error {
  readonly placeholder: string;
  constructor(placeholder: string, why: string) {
    super(`placeholder {${placeholder}} ${why}`);
    this.placeholder = placeholder;
  }
}

export function formatTemplate(template: string, values: Readonly<Record<string, unknown>>): string {
  return template.replace(/\{\{|\}\}|\{([^{}]*)\}/g, (whole, name: string | undefined) => {
    if (whole === '{{') return '{';
    if (whole === '}}') return '}';
    const key = name ?? '';
    if (!Object.hasOwn(values, key)) throw new PlaceholderError(key, 'is unknown');
    const v = values[key];
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
