// Human reports that must read well at any terminal width (the plan table, the artifacts table), and their
// machine-readable twins for --json. Pure functions of the data they show; the width is passed in.
import type { Image } from '../state/image.js';
import type { Plan } from '../state/plan.js';

/** The width to fit on a terminal ($COLUMNS, else the terminal's), or undefined when not on a terminal. */
export function terminalWidth(
  env: NodeJS.ProcessEnv = process.env,
  stream: { isTTY?: boolean; columns?: number } = process.stdout,
): number | undefined {
  const fromEnv = Number(env.COLUMNS);
  if (Number.isInteger(fromEnv) && fromEnv >= 20) return fromEnv;
  if (stream.isTTY && stream.columns && stream.columns >= 20) return stream.columns;
  return undefined;
}

/** Shorten a cell to `w` characters, keeping both ends (image names differ at the end as often as the start). */
export function ellipsize(s: string, w: number): string {
  if (s.length <= w) return s;
  if (w <= 1) return s.slice(0, w);
  const head = Math.ceil((w - 1) / 2);
  return `${s.slice(0, head)}…${s.slice(s.length - (w - 1 - head))}`;
}

/** Word-wrap a cell to lines of at most `w` characters (a word longer than `w` is ellipsized). */
function wrap(s: string, w: number): string[] {
  const lines: string[] = [];
  let cur = '';
  for (const word of s.split(' ')) {
    const piece = ellipsize(word, w);
    if (!cur) cur = piece;
    else if (cur.length + 1 + piece.length <= w) cur += ` ${piece}`;
    else {
      lines.push(cur);
      cur = piece;
    }
  }
  lines.push(cur);
  return lines;
}

export interface Column {
  header: string;
  /** may be word-wrapped onto more lines when the table is too wide */
  wrap?: boolean;
  /** may be shortened with … when the table is too wide */
  shrink?: boolean;
  /** never narrower than this when wrapping or shrinking */
  min?: number;
}

/**
 * A plain table, two spaces between columns, the last column unpadded. With `width`, wrappable columns wrap
 * and shrinkable ones are shortened (widest first) until the table fits.
 */
export function fitTable(columns: readonly Column[], rows: readonly string[][], width?: number): string {
  const all = [columns.map((c) => c.header), ...rows];
  const widths = columns.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)));
  const total = () => widths.reduce((a, b) => a + b, 0) + 2 * (widths.length - 1);
  if (width !== undefined) {
    for (const mode of ['wrap', 'shrink'] as const) {
      for (;;) {
        const over = total() - width;
        if (over <= 0) break;
        // the widest adjustable column gives way first
        let best = -1;
        for (let i = 0; i < columns.length; i++) {
          const c = columns[i]!;
          const min = Math.max(c.min ?? 8, c.header.length);
          if (!c[mode] || widths[i]! <= min) continue;
          if (best < 0 || widths[i]! > widths[best]!) best = i;
        }
        if (best < 0) break;
        const min = Math.max(columns[best]!.min ?? 8, columns[best]!.header.length);
        widths[best] = Math.max(min, widths[best]! - over);
      }
    }
  }
  const out: string[] = [];
  for (const r of all) {
    const cells = columns.map((c, i) => {
      const v = r[i] ?? '';
      const w = widths[i]!;
      if (v.length <= w) return [v];
      return c.wrap ? wrap(v, w) : [ellipsize(v, w)];
    });
    const height = Math.max(...cells.map((c) => c.length));
    for (let l = 0; l < height; l++) {
      out.push(
        cells
          .map((c, i) => (i === cells.length - 1 ? (c[l] ?? '') : (c[l] ?? '').padEnd(widths[i]!)))
          .join('  ')
          .trimEnd(),
      );
    }
  }
  return out.join('\n');
}

export interface PlanRow {
  image: Image;
  plan: Plan;
}

/** One row per image: name, cloud (names can repeat across clouds and configs), actions, what rollback undoes. */
export function planTableFit(rows: readonly PlanRow[], width?: number): string {
  const cols: Column[] = [
    { header: 'IMAGE', shrink: true, min: 24 },
    { header: 'CLOUD', min: 5 },
    { header: 'ACTIONS', wrap: true, min: 14 },
    { header: 'UNDO', wrap: true, min: 8 },
  ];
  const body = rows.map(({ image, plan }) => [
    image.imageName,
    image.config.cloud,
    plan.actions.join(' ') ||
      (plan.unchanged !== undefined ? `unchanged (same content as r${plan.unchanged})` : '-'),
    plan.rollbackBlocked ? 'refused (published/released)' : plan.undo.join(' ') || '-',
  ]);
  return fitTable(cols, body, width);
}

export interface PlanSummary {
  images: number;
  to_build: number;
  to_upload: number;
  to_import: number;
  to_publish: number;
  to_release: number;
  to_undo: number;
  up_to_date: number;
}

export function planSummary(rows: readonly PlanRow[]): PlanSummary {
  const has = (s: string) => rows.filter((r) => (r.plan.actions as string[]).includes(s)).length;
  return {
    images: rows.length,
    to_build: has('local'),
    to_upload: has('upload'),
    to_import: has('import'),
    to_publish: has('publish'),
    to_release: has('release'),
    to_undo: rows.filter((r) => !r.plan.rollbackBlocked && r.plan.undo.length > 0).length,
    up_to_date: rows.filter((r) => r.plan.actions.length === 0).length,
  };
}

export function planSummaryLine(s: PlanSummary): string {
  return `${s.images} image${s.images === 1 ? '' : 's'}: ${s.to_build} to build, ${s.to_publish} to publish, ${s.to_release} to release, ${s.to_undo} to undo, ${s.up_to_date} up to date`;
}

/** `state --json`: schema documented in docs/state.md ("Machine-readable output"). */
export function planJson(rows: readonly PlanRow[]): object {
  return {
    schema: 'cloud-image-builder/state/v1',
    images: rows.map(({ image, plan }) => ({
      image: image.imageName,
      config_key: image.config.config_key,
      cloud: image.config.cloud,
      revision: plan.revision,
      actions: plan.actions,
      undo: plan.undo,
      rollback_blocked: plan.rollbackBlocked,
      revised: plan.revised,
    })),
    summary: planSummary(rows),
  };
}

/** What one run produced for one image, for the closing artifacts table. */
export interface ArtifactRow {
  image: string;
  /** local: the file to upload; import/publish: "<region>" */
  where: string;
  /** local: path; import/publish: the image id */
  what: string;
}

/** The closing table of a run that made artifacts (as Packer ends with its artifacts). */
export function artifactsTable(rows: readonly ArtifactRow[], width?: number, whereHeader = 'REGION'): string {
  return fitTable(
    [
      { header: 'IMAGE', shrink: true, min: 24 },
      { header: whereHeader, min: 6 },
      { header: 'ARTIFACT', shrink: true, min: 20 },
    ],
    rows.map((r) => [r.image, r.where, r.what]),
    width,
  );
}
