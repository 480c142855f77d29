// Where config settings come from: file, line and column of every key, for error messages.

export interface Location {
  /** file as shown to the user (relative to the current directory when inside it) */
  readonly file: string;
  readonly line?: number;
  readonly col?: number;
}

export function formatLocation(loc: Location): string {
  if (loc.line === undefined) return loc.file;
  return `${loc.file}:${loc.line}${loc.col === undefined ? '' : `:${loc.col}`}`;
}

const SEP = '\u0001';

/** Config tree path (e.g. ["Dimensions", "cloud", "aws", "disk_size"]) -> the places that set it, in order. */
export class SourceIndex {
  private readonly map = new Map<string, Location[]>();

  add(path: readonly string[], loc: Location): void {
    const k = path.join(SEP);
    const list = this.map.get(k);
    if (list) list.push(loc);
    else this.map.set(k, [loc]);
  }

  /** The last place that set `path` exactly. */
  get(path: readonly string[]): Location | undefined {
    return this.map.get(path.join(SEP))?.at(-1);
  }

  /** The last place that set `path`, or else its nearest parent that was set. */
  find(path: readonly string[]): Location | undefined {
    for (let n = path.length; n > 0; n--) {
      const loc = this.get(path.slice(0, n));
      if (loc) return loc;
    }
    return undefined;
  }

  get size(): number {
    return this.map.size;
  }
}
