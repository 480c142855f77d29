import type { PublishResult } from './types.js';

/**
 * A per-region summary of one publish: every region with its image id, then the failed ones with their error
 * code and message, then warnings. Plain text, one region per line, for the terminal.
 */
export function formatPublishSummary(imageName: string, result: PublishResult): string {
  const rows: [string, string, string][] = [];
  const failed = new Map(result.failures.map((f) => [f.region, f]));
  const regions = [...new Set([...Object.keys(result.artifacts), ...failed.keys()])].sort();
  for (const r of regions) {
    const f = failed.get(r);
    const id = result.artifacts[r] ?? '-';
    rows.push([r, f ? 'FAILED' : 'ok', f ? `${id}  ${f.code ? `${f.code}: ` : ''}${f.error}` : id]);
  }
  const w1 = Math.max(6, ...rows.map((x) => x[0].length));
  const w2 = Math.max(6, ...rows.map((x) => x[1].length));
  const ok = regions.length - failed.size;
  const lines = [
    `publish ${imageName}: ${ok} of ${regions.length} region(s) ok${failed.size ? `, ${failed.size} FAILED` : ''}`,
    ...rows.map(([a, b, c]) => `  ${a.padEnd(w1)}  ${b.padEnd(w2)}  ${c}`),
  ];
  for (const w of result.warnings ?? []) lines.push(`  warning: ${w}`);
  return lines.join('\n');
}
