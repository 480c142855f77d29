// After the local build: read the disk the builder made, and write beside the image its SBOMs (SPDX 2.3,
// CycloneDX 1.6), its root filesystem manifest and the provenance statement, each with a .sha512. Every file is
// written atomically; on failure none of them is left behind.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdir, readFile, rm } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import type { Repository } from '../config/types.js';
import { substituteCdn } from '../local/chroot/plan.js';
import type { Image } from '../state/image.js';
import type { SupplyState } from '../state/image-state.js';
import { hashFile, parseChecksum, writeFileAtomic } from '../util/fs.js';
import { parseInstalledDb } from './apkdb.js';
import { readDisk } from './disk.js';
import { supplyFileNames, unchangedAs } from './files.js';
import { buildProvenance, type ResourceDescriptor, serializeProvenance } from './provenance.js';
import { buildCycloneDx, buildSpdx, serializeCycloneDx, serializeSpdx } from './sbom.js';

export interface ToolInfo {
  name: string;
  version: string;
  commit?: string;
}

export interface SupplyContext {
  rootDir: string;
  workDir: string;
  /** --custom overlay directories */
  custom: readonly string[];
  tool: ToolInfo;
  /** build start and finish */
  started: Date;
  finished: Date;
  /** the image's SOURCE_DATE_EPOCH (chroot builder): the SBOMs' creation time, so they are reproducible too */
  sourceDateEpoch?: number;
  /** inputs the builder reports (minirootfs or ISO, repository indexes) */
  inputs?: readonly ResourceDescriptor[];
  /** digests of work/configs and the overlays, computed once per run */
  configDigests?: ConfigDigests;
}

export interface ConfigDigests {
  configs: Record<string, string>;
  overlays: { path: string; digest: string }[];
}

const run = promisify(execFile);

/** This tool's name, version (package.json) and git commit (when the checkout has one). */
export async function toolInfo(rootDir: string): Promise<ToolInfo> {
  const pkg = JSON.parse(await readFile(join(rootDir, 'package.json'), 'utf8')) as {
    name: string;
    version: string;
  };
  let commit: string | undefined;
  try {
    commit = (await run('git', ['-C', rootDir, 'rev-parse', 'HEAD'])).stdout.trim() || undefined;
  } catch {
    commit = undefined;
  }
  return { name: pkg.name, version: pkg.version, ...(commit ? { commit } : {}) };
}

async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string) => {
    let entries: import('node:fs').Dirent[];
    try {
      entries = await readdir(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile()) out.push(p);
    }
  };
  await walk(dir);
  return out.sort();
}

/** sha256 of every file of work/configs, and of each overlay (over its files' paths and digests). */
export async function configDigests(workDir: string, custom: readonly string[]): Promise<ConfigDigests> {
  const configsDir = join(workDir, 'configs');
  const configs: Record<string, string> = {};
  for (const f of await filesUnder(configsDir))
    configs[relative(configsDir, f)] = await hashFile(f, 'sha256');
  const overlays: ConfigDigests['overlays'] = [];
  for (const dir of custom) {
    const h = createHash('sha256');
    for (const f of await filesUnder(dir)) h.update(`${relative(dir, f)}\0${await hashFile(f, 'sha256')}\n`);
    overlays.push({ path: dir, digest: h.digest('hex') });
  }
  return { configs, overlays };
}

/**
 * The index of every configured repository the build read from a local directory (the configured URL, with the
 * Alpine CDN prefix moved to --cdn-url as the build reached it): <repo>/<arch>/APKINDEX.tar.gz and its digest.
 * Network repositories' indexes are found in the apk cache instead (apkIndexInputs).
 */
export async function localRepositoryIndexes(
  repos: readonly Repository[],
  cdnUrl: string,
  arch: string,
): Promise<ResourceDescriptor[]> {
  const out: ResourceDescriptor[] = [];
  for (const { url, enabled } of repos) {
    if (!enabled) continue;
    const reached = substituteCdn(url, cdnUrl);
    if (!reached.startsWith('file://')) continue;
    const index = join(decodeURIComponent(reached.slice('file://'.length)), arch, 'APKINDEX.tar.gz');
    try {
      out.push({
        uri: `${url.replace(/\/+$/, '')}/${arch}/APKINDEX.tar.gz`,
        digest: { sha256: await hashFile(index, 'sha256') },
        annotations: {
          kind: 'apk repository index',
          read_from: `${reached.replace(/\/+$/, '')}/${arch}/APKINDEX.tar.gz`,
        },
      });
    } catch {
      // a repository the build skipped (its directory does not exist)
    }
  }
  return out;
}

/**
 * The repository indexes in the chroot builder's apk cache for an arch (work/apk-cache/<arch>), with their digests.
 * apk names each after a hash of its repository URL; the cache is shared by the variants of the arch, so this
 * lists every index the builds of this work directory fetched, this build's among them.
 */
export async function apkIndexInputs(workDir: string, arch: string): Promise<ResourceDescriptor[]> {
  const dir = join(workDir, 'apk-cache', arch);
  let names: string[];
  try {
    names = (await readdir(dir)).filter((n) => /^APKINDEX\.[0-9a-f]+\.tar\.gz$/.test(n)).sort();
  } catch {
    return [];
  }
  return Promise.all(
    names.map(async (n) => ({
      name: n,
      digest: { sha256: await hashFile(join(dir, n), 'sha256') },
      annotations: { kind: 'apk repository index', cache: `work/apk-cache/${arch}` },
    })),
  );
}

/** The kinds and names of the files written, and the record for the metadata. */
export async function produceSupplyChain(image: Image, ctx: SupplyContext): Promise<SupplyState> {
  const c = image.config;
  const names = supplyFileNames(image.imageName);
  const paths = Object.values(names).map((n) => join(image.localDir, n));
  try {
    const disk = await readDisk(image.localImage);
    // a root not installed by apk (e.g. a stand-in builder's copy of itself) has no package database: its SBOMs
    // list no packages, and the caller says so
    const packages =
      disk.installedDb === undefined
        ? []
        : parseInstalledDb(disk.installedDb, `${image.localImage}:/lib/apk/db/installed`);
    // the build has just written the image's .sha512: only its sha256 is still to compute
    const [sha256, sha512] = await Promise.all([
      hashFile(image.uploadPath, 'sha256'),
      readFile(`${image.uploadPath}.sha512`, 'utf8')
        .then(parseChecksum)
        .catch(() => hashFile(image.uploadPath, 'sha512')),
    ]);
    const subject = {
      name: image.imageName,
      version: `${c.release}-r${image.revision}`,
      release: c.release,
      arch: c.arch,
      file: { name: image.uploadFile, sha256, sha512 },
      contentDigest: disk.manifest.digest,
      supplier: c.project,
    };
    const created = ctx.sourceDateEpoch !== undefined ? new Date(ctx.sourceDateEpoch * 1000) : ctx.finished;
    const sbomInput = { subject, packages, created, tool: ctx.tool };
    const texts: [string, string][] = [
      [names.manifest, disk.manifest.text],
      [names.spdx, serializeSpdx(buildSpdx(sbomInput))],
      [names.cyclonedx, serializeCycloneDx(buildCycloneDx(sbomInput))],
    ];
    const subjects = [{ name: image.uploadFile, sha256 }];
    for (const [name, text] of texts) {
      const path = join(image.localDir, name);
      await writeFileAtomic(path, text);
      await writeFileAtomic(`${path}.sha512`, `${createHash('sha512').update(text).digest('hex')}\n`);
      subjects.push({ name, sha256: createHash('sha256').update(text).digest('hex') });
    }
    const digests = ctx.configDigests ?? (await configDigests(ctx.workDir, ctx.custom));
    const statement = buildProvenance({
      subjects,
      variant: {
        config_key: c.config_key,
        image_key: c.image_key,
        name: image.imageName,
        revision: image.revision,
        ...(typeof c.builder === 'string' ? { builder: c.builder } : {}),
      },
      configs: digests.configs,
      overlays: digests.overlays,
      inputs: ctx.inputs ?? [],
      packages,
      release: c.release,
      contentDigest: disk.manifest.digest,
      tool: ctx.tool,
      started: ctx.started,
      finished: ctx.finished,
      invocationId: `${hostname()}/${process.pid}/${ctx.started.toISOString()}`,
    });
    const prov = serializeProvenance(statement);
    const provPath = join(image.localDir, names.provenance);
    await writeFileAtomic(provPath, prov);
    await writeFileAtomic(`${provPath}.sha512`, `${createHash('sha512').update(prov).digest('hex')}\n`);
    const supply: SupplyState = {
      content_digest: disk.manifest.digest,
      packages: packages.length,
      files: { ...names },
      baseline: image.state.supply?.baseline ?? null,
    };
    return { ...supply, unchanged_as: unchangedAs(supply) };
  } catch (err) {
    await Promise.all(paths.flatMap((p) => [p, `${p}.sha512`]).map((p) => rm(p, { force: true })));
    throw err;
  }
}
