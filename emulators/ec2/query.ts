/**
 * The EC2 Query protocol's request side: `application/x-www-form-urlencoded` bodies whose keys are dotted paths
 * (`Filter.1.Name`, `Filter.1.Value.1`, `BlockDeviceMapping.1.Ebs.SnapshotId`). Numeric segments are 1-based
 * list indexes; everything else names a structure member.
 */

export type QueryValue = string | QueryValue[] | QueryObject;
export interface QueryObject {
  [key: string]: QueryValue;
}

/** Parse a form body into nested objects and arrays (numeric path segments become array positions). */
export function parseQuery(body: string): QueryObject {
  const root: QueryObject = {};
  for (const [key, value] of new URLSearchParams(body)) {
    const parts = key.split('.');
    let node: QueryObject | QueryValue[] = root;
    for (let i = 0; i < parts.length; i++) {
      const part = parts[i]!;
      const last = i === parts.length - 1;
      const nextIsIndex = !last && /^\d+$/.test(parts[i + 1]!);
      const slot: string | number = Array.isArray(node) ? Number(part) - 1 : part;
      const holder = node as Record<string | number, QueryValue>;
      if (last) {
        holder[slot] = value;
        break;
      }
      let child = holder[slot];
      if (child === undefined || typeof child === 'string') {
        child = nextIsIndex ? [] : {};
        holder[slot] = child;
      }
      node = child as QueryObject | QueryValue[];
    }
  }
  return compact(root) as QueryObject;
}

/** Drop holes left by sparse indexes (e.g. `Foo.2` without `Foo.1`). */
function compact(v: QueryValue): QueryValue {
  if (typeof v === 'string') return v;
  if (Array.isArray(v)) return v.filter((x) => x !== undefined).map(compact);
  const out: QueryObject = {};
  for (const [k, x] of Object.entries(v)) out[k] = compact(x);
  return out;
}

/** A string member, or undefined. */
export function str(o: QueryValue | undefined, key: string): string | undefined {
  if (!o || typeof o === 'string' || Array.isArray(o)) return undefined;
  const v = o[key];
  return typeof v === 'string' ? v : undefined;
}

/** A list member (an absent list is empty). */
export function list(o: QueryValue | undefined, key: string): QueryValue[] {
  if (!o || typeof o === 'string' || Array.isArray(o)) return [];
  const v = o[key];
  if (v === undefined) return [];
  return Array.isArray(v) ? v : [v];
}

/** A list of strings. */
export function strings(o: QueryValue | undefined, key: string): string[] {
  return list(o, key).filter((x): x is string => typeof x === 'string');
}

/** A structure member. */
export function obj(o: QueryValue | undefined, key: string): QueryObject | undefined {
  if (!o || typeof o === 'string' || Array.isArray(o)) return undefined;
  const v = o[key];
  return v && typeof v === 'object' && !Array.isArray(v) ? v : undefined;
}

export function bool(o: QueryValue | undefined, key: string): boolean | undefined {
  const v = str(o, key);
  if (v === undefined) return undefined;
  return v === 'true';
}

/** `Tag.N.Key` / `Tag.N.Value` pairs. */
export function tagList(o: QueryValue | undefined, key: string): { key: string; value: string }[] {
  return list(o, key).map((t) => ({ key: str(t, 'Key') ?? '', value: str(t, 'Value') ?? '' }));
}

/** `Filter.N.Name` / `Filter.N.Value.M`. */
export function filters(o: QueryValue | undefined, key = 'Filter'): { name: string; values: string[] }[] {
  return list(o, key).map((f) => ({ name: str(f, 'Name') ?? '', values: strings(f, 'Value') }));
}
