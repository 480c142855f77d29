import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { RUN_FIELDS } from '../../src/config/index.js';
import { Image } from '../../src/state/image.js';
import { emptyState, readState, STATE_FIELDS, stateAfter } from '../../src/state/image-state.js';
import { parseMetadata, readMetadata, writeMetadata } from '../../src/state/metadata.js';
import { loadLatestMetadata } from '../../src/state/refresh.js';
import { createStoragePool } from '../../src/storage/index.js';
import { UserError } from '../../src/util/errors.js';
import { silentLogger } from '../../src/util/log.js';
import { variant } from './release-fixtures.js';

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'cib-state-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

const AT = '2026-11-20T10:00:00.000Z';

/** metadata as this tool wrote it before the image state was a record of its own */
const OLD_METADATA = `arch: x86_64
bootstrap: tiny
cloud: aws
description: Alpine Linux 3.21.2 x86_64 uefi tiny - r1
end_of_life: 2026-11-01
firmware: uefi
image_key: 3.21.2-x86_64-uefi-tiny-aws
name: aws_alpine-3.21.2-x86_64-uefi-tiny-r1
project: test-images
release: 3.21.2
revision: 1
version: "3.21"
built: 2026-11-01T10:00:00.000Z
uploaded: 2026-11-01T10:05:00.000Z
imported: 2026-11-01T10:20:00.000Z
import_id: ami-0123456789abcdef0
import_region: us-west-2
published: 2026-11-01T10:40:00.000Z
artifacts:
  us-west-2: ami-0123456789abcdef0
  us-east-1: ami-0fedcba9876543210
metadata_updated: 2026-11-01T10:40:01.000Z
`;

describe('the image state', () => {
  it('has one field list, which images.yaml knows as run fields', () => {
    expect(STATE_FIELDS).toEqual([
      'revision',
      'built',
      'uploaded',
      'imported',
      'import_id',
      'import_region',
      'signed',
      'published',
      'released',
      'artifacts',
      'signing_key_fingerprint',
      'supply',
      'boot_test',
      'metadata_updated',
    ]);
    for (const f of STATE_FIELDS) expect(RUN_FIELDS.has(f), f).toBe(true);
    expect(Object.keys(emptyState(4))).toEqual([...STATE_FIELDS]);
    expect(Object.isFrozen(emptyState())).toBe(true);
  });

  it('changes only through one function per step result, each returning a new record', () => {
    const s0 = emptyState(2);
    const s1 = stateAfter.built(s0, AT);
    expect(s0.built).toBeNull();
    expect(s1).toMatchObject({ revision: 2, built: AT });
    const imported = stateAfter.imported(stateAfter.uploaded(s1, AT), {
      imported: AT,
      import_id: 'ami-1',
      import_region: 'us-west-2',
    });
    const published = stateAfter.published(imported, { artifacts: { 'us-west-2': 'ami-1' }, published: AT });
    const partly = stateAfter.published(published, { artifacts: { 'eu-west-1': 'ami-2' } });
    expect(partly.artifacts).toEqual({ 'us-west-2': 'ami-1', 'eu-west-1': 'ami-2' });
    const signed = stateAfter.signed(partly, { signed: AT, fingerprint: 'ABCD' });
    expect(signed.signing_key_fingerprint).toBe('ABCD');
    // --revise and the reload start from the same empty record: nothing of the old revision is kept
    const revised = stateAfter.revision(stateAfter.released(signed, AT), 3);
    expect(revised).toEqual(emptyState(3));
    const rolledBack = stateAfter.localRemoved(stateAfter.uploadRemoved(stateAfter.importRemoved(imported)));
    expect(rolledBack).toEqual(emptyState(2));
  });

  it('reads metadata written before it was a record of its own', () => {
    const { meta, state } = parseMetadata(OLD_METADATA, 'old.yaml');
    expect(state).toMatchObject({
      revision: 1,
      built: '2026-11-01T10:00:00.000Z',
      import_id: 'ami-0123456789abcdef0',
      signed: null,
      released: null,
      signing_key_fingerprint: null,
      artifacts: { 'us-west-2': 'ami-0123456789abcdef0', 'us-east-1': 'ami-0fedcba9876543210' },
    });
    expect(meta.version).toBe('3.21');
    expect(meta.end_of_life).toBe('2026-11-01');
    // a revision kept as text (as cloud tags keep it) is a number too
    const fromTags = readState({ revision: '7', built: AT });
    expect('state' in fromTags && fromTags.state.revision).toBe(7);
  });

  it('refuses bad metadata, naming the file and every bad field with what was expected and found', () => {
    const bad = `${OLD_METADATA.replace('revision: 1', 'revision: one')
      .replace('import_region: us-west-2', 'import_region: [us-west-2]')
      .replace('arch: x86_64', 'arch: {x: 1}')}signed: 12\n`;
    let err: unknown;
    try {
      parseMetadata(bad, 'storage/aws_alpine-r1.yaml');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(UserError);
    const msg = (err as Error).message;
    expect(msg).toContain('storage/aws_alpine-r1.yaml: bad image metadata');
    expect(msg).toContain('revision: expected a whole number >= 0, found "one"');
    expect(msg).toContain('import_region: expected a region name or null, found ["us-west-2"]');
    expect(msg).toContain('signed: expected an ISO date-time or null, found 12');
    expect(msg).toContain('arch: expected text');
    expect(() => parseMetadata('- a\n- b\n', 'list.yaml')).toThrow(/list.yaml: expected a YAML mapping/);
    expect(() => parseMetadata('built: "2026-01-01\\u202e"\n', 'bidi.yaml')).toThrow(/built: expected/);
  });

  it('writes metadata from the configuration and the state, and reads the same state back', async () => {
    const cfg = variant({ version: '3.21', release: '3.21.2', storageRoot: join(root, 'store-w') });
    const image = new Image(cfg, join(root, 'work-w'), stateAfter.built(emptyState(1), AT));
    image.record(stateAfter.signed(image.state, { signed: AT, fingerprint: 'F00D' }));
    await writeMetadata(image, new Date(AT));
    const back = await readMetadata(image.metadataPath);
    expect(back?.state).toEqual(image.state);
    expect(back?.state.metadata_updated).toBe(AT);
    expect(back?.meta).toMatchObject({ name: image.imageName, revision: 1, built: AT });
  });

  it('does not copy bad metadata from storage into work/', async () => {
    const storageRoot = join(root, 'store-bad');
    const cfg = variant({ version: '3.21', release: '3.21.2', storageRoot });
    const image = new Image(cfg, join(root, 'work-bad'), emptyState(0));
    const dir = new URL(cfg.storage_url!).pathname;
    await mkdir(dir, { recursive: true });
    const text = stringify({ ...image.tags(), revision: 0, uploaded: 'yesterday', artifacts: ['ami-1'] });
    await writeFile(join(dir, image.metadataFile), text);
    await writeFile(
      join(dir, `${image.metadataFile}.sha512`),
      `${createHash('sha512').update(text).digest('hex')}\n`,
    );
    const pool = createStoragePool({ log: silentLogger(), env: {} });
    await expect(loadLatestMetadata(image, pool)).rejects.toThrow(
      new RegExp(`${image.metadataFile} in storage: bad image metadata \\(uploaded: .*artifacts: `),
    );
    await pool.close();
    // neither the file nor its temporary copy stays in the image's work directory
    expect(await readdir(image.localDir).catch(() => [])).toEqual([]);
    expect(image.state).toEqual(emptyState(0));
  });
});

describe('the supply record in the image state', () => {
  const D = `sha256:${'a'.repeat(64)}`;
  it('reads back what the local step wrote and refuses a malformed one', () => {
    const supply = {
      content_digest: D,
      packages: 62,
      files: { spdx: 'x.spdx.json' },
      baseline: { revision: 1, content_digest: D },
      unchanged_as: 1,
    };
    const r = readState({ revision: 2, supply });
    expect('state' in r && r.state.supply).toEqual(supply);
    expect('problems' in readState({ supply: { content_digest: 'md5:x' } })).toBe(true);
    expect('problems' in readState({ supply: { content_digest: D, files: { spdx: '../x' } } })).toBe(true);
    expect('state' in readState({}) && readState({})).toMatchObject({ state: { supply: null } });
  });
});
