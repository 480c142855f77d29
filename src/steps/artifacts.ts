// The closing "what this run made" table: the image file of every variant built by `local`, and the image id
// in every region after `import` / `publish` (as Packer ends a build with its artifacts).
import { relative } from 'node:path';
import type { Image } from '../state/image.js';
import { type ArtifactRow, artifactsTable, fitTable } from './tables.js';

export interface RunArtifacts {
  local: ArtifactRow[];
  cloud: ArtifactRow[];
}

/** Collect the artifacts of the images whose steps ran and did not fail. */
export function collectArtifacts(
  ran: ReadonlyMap<Image, ReadonlySet<string>>,
  failed: ReadonlySet<string>,
  workDir: string,
): RunArtifacts {
  const local: ArtifactRow[] = [];
  const cloud: ArtifactRow[] = [];
  for (const [image, steps] of ran) {
    if (failed.has(image.config.config_key)) continue;
    const st = image.state;
    if (steps.has('local') && st.built) {
      local.push({
        image: image.config.config_key,
        where: 'local',
        what: relative(workDir, image.uploadPath),
      });
    }
    if (steps.has('publish') && st.artifacts && Object.keys(st.artifacts).length > 0) {
      for (const [region, id] of Object.entries(st.artifacts).sort()) {
        cloud.push({ image: image.imageName, where: region, what: String(id) });
      }
    } else if (steps.has('import') && st.import_id) {
      cloud.push({ image: image.imageName, where: st.import_region ?? '-', what: st.import_id });
    }
  }
  return { local, cloud };
}

/** The tables, or "" when the run made nothing. */
export function formatArtifacts(a: RunArtifacts, workDir: string, width?: number): string {
  const parts: string[] = [];
  if (a.local.length > 0) {
    parts.push(
      `Built ${a.local.length} image file${a.local.length === 1 ? '' : 's'} (under ${workDir}):`,
      fitTable(
        [
          { header: 'VARIANT', shrink: true, min: 20 },
          { header: 'FILE', shrink: true, min: 24 },
        ],
        a.local.map((r) => [r.image, r.what]),
        width,
      ),
    );
  }
  if (a.cloud.length > 0) {
    if (parts.length) parts.push('');
    parts.push(
      `Cloud images (${a.cloud.length}):`,
      artifactsTable(
        a.cloud.map((r) => ({ image: r.image, where: r.where, what: r.what })),
        width,
      ),
    );
  }
  return parts.join('\n');
}
