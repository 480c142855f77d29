// Merge rules used by config resolution.
//
// Two different merges exist, exactly as in alpine-cloud-images:
// - building the config tree (HOCON's own rules, also used for YAML includes and documents): objects merge
//   key by key, anything else (arrays, scalars, null) replaces what was there;
// - merging a layer (Default, a dimension's config, a WHEN block, Mandatory) into one image variant: objects
//   merge, arrays append, scalars and null replace (null therefore resets a key for the layers that follow).

export type PlainObject = Record<string, unknown>;

export function isPlainObject(v: unknown): v is PlainObject {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

/** Deep copy of plain JSON-like data (objects, arrays, scalars). */
export function deepClone<T>(v: T): T {
  if (Array.isArray(v)) return v.map((x) => deepClone(x)) as T;
  if (isPlainObject(v)) {
    const out: PlainObject = {};
    for (const k of Object.keys(v)) out[k] = deepClone(v[k]);
    return out as T;
  }
  return v;
}

/** Tree merge: objects merge recursively, everything else replaces. Returns a new value; inputs are not changed. */
export function mergeOverride(base: unknown, over: unknown): unknown {
  if (!isPlainObject(base) || !isPlainObject(over)) return over;
  const out: PlainObject = { ...base };
  for (const k of Object.keys(over)) {
    out[k] = Object.hasOwn(base, k) ? mergeOverride(base[k], over[k]) : over[k];
  }
  return out;
}

/**
 * Variant merge (in place into `target`): objects merge recursively, arrays append, anything else (scalars,
 * null, or a change of type) replaces. Values taken from `source` are copied, so `source` can be reused.
 * A key keeps its position in `target` when it is replaced.
 */
export function mergeAdditive(target: PlainObject, source: PlainObject): PlainObject {
  for (const k of Object.keys(source)) {
    const s = source[k];
    if (!Object.hasOwn(target, k)) {
      target[k] = deepClone(s);
      continue;
    }
    const t = target[k];
    if (isPlainObject(t) && isPlainObject(s)) mergeAdditive(t, s);
    else if (Array.isArray(t) && Array.isArray(s)) for (const x of s) t.push(deepClone(x));
    else target[k] = deepClone(s);
  }
  return target;
}

/** The value at `path` inside `obj`, or undefined. */
export function getPath(obj: unknown, path: readonly string[]): unknown {
  let cur: unknown = obj;
  for (const p of path) {
    if (!isPlainObject(cur) || !Object.hasOwn(cur, p)) return undefined;
    cur = cur[p];
  }
  return cur;
}
