import type { RegionFailure } from '../clouds/types.js';
import type { StepFailure } from './context.js';

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows
    .map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  '))
    .join('\n');
}

export function failureTable(failures: readonly StepFailure[]): string {
  return table([['IMAGE', 'STEP', 'ERROR'], ...failures.map((f) => [f.imageName, f.step, f.error])]);
}

export function regionTable(items: readonly { image: string; failures: RegionFailure[] }[]): string {
  const rows = [['IMAGE', 'REGION', 'ERROR']];
  for (const i of items) {
    for (const f of i.failures) rows.push([i.image, f.region, f.code ? `${f.code}: ${f.error}` : f.error]);
  }
  return table(rows);
}
