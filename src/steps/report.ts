import type { RegionFailure } from '../clouds/types.js';
import type { PlannedImage } from '../state/refresh.js';
import type { StepFailure } from './context.js';

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows
    .map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  '))
    .join('\n');
}

/** The plan table printed by the state step: image, actions, and what a rollback would undo. */
export function planTable(states: readonly PlannedImage[]): string {
  const rows = [['IMAGE', 'ACTIONS', 'UNDO']];
  for (const s of states) {
    const undo = s.plan.rollbackBlocked ? 'refused (published/released)' : s.plan.undo.join(' ') || '-';
    const actions =
      s.plan.actions.join(' ') ||
      (s.plan.unchanged !== undefined ? `unchanged (same content as r${s.plan.unchanged})` : '-');
    rows.push([s.image.imageName, actions, undo]);
  }
  return table(rows);
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
