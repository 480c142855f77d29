// The plan and artifacts tables: a cloud column, fitting the terminal width, the summary line, --json.
import { describe, expect, it } from 'vitest';
import { Image } from '../../src/state/image.js';
import type { Plan } from '../../src/state/plan.js';
import { collectArtifacts, formatArtifacts } from '../../src/steps/artifacts.js';
import {
  ellipsize,
  fitTable,
  planJson,
  planSummary,
  planSummaryLine,
  planTableFit,
  terminalWidth,
} from '../../src/steps/tables.js';
import { sampleConfig } from '../fixtures/local/sample.js';

const plan = (over: Partial<Plan> = {}): Plan => ({
  actions: ['local', 'upload', 'import', 'sign', 'publish', 'release'],
  undo: [],
  rollbackBlocked: false,
  revision: 0,
  revised: false,
  notes: [],
  ...over,
});

const image = (cloud: string, key = `3.24-x86_64-uefi-tiny-vm-${cloud}`) =>
  new Image(
    sampleConfig({
      cloud,
      config_key: key,
      image_key: key,
      name: 'alpine-3.24.1-x86_64-uefi-tiny-r{revision}',
    }),
    '/w',
  );

describe('plan table', () => {
  const rows = [
    { image: image('aws'), plan: plan() },
    { image: image('azure'), plan: plan({ actions: ['publish'], undo: ['upload', 'local'] }) },
    { image: image('gcp'), plan: plan({ actions: [], rollbackBlocked: true }) },
  ];

  it('tells rows with equal names apart by their cloud', () => {
    const t = planTableFit(rows);
    const lines = t.split('\n');
    expect(lines[0]).toMatch(/^IMAGE\s+CLOUD\s+ACTIONS\s+UNDO$/);
    expect(lines[1]).toMatch(
      /^alpine-3\.24\.1-x86_64-uefi-tiny-r0\s+aws\s+local upload import sign publish release\s+-$/,
    );
    expect(lines[2]).toMatch(/\s+azure\s+publish\s+upload local$/);
    expect(lines[3]).toMatch(/\s+gcp\s+-\s+refused \(published\/released\)$/);
  });

  it('fits 80 (and 60) columns by wrapping actions and shortening names, losing no action', () => {
    for (const width of [80, 60]) {
      const t = planTableFit(rows, width);
      for (const l of t.split('\n')) expect(l.length).toBeLessThanOrEqual(width);
      for (const a of ['local', 'upload', 'import', 'sign', 'publish', 'release']) expect(t).toContain(a);
      expect(t).toContain('aws');
    }
  });

  it('summarises and has a JSON form', () => {
    const s = planSummary(rows);
    expect(s).toMatchObject({
      images: 3,
      to_build: 1,
      to_publish: 2,
      to_release: 1,
      to_undo: 1,
      up_to_date: 1,
    });
    expect(planSummaryLine(s)).toBe(
      '3 images: 1 to build, 2 to publish, 1 to release, 1 to undo, 1 up to date',
    );
    const j = planJson(rows) as { schema: string; images: Record<string, unknown>[] };
    expect(j.schema).toBe('cloud-image-builder/state/v1');
    expect(j.images[1]).toEqual({
      image: 'alpine-3.24.1-x86_64-uefi-tiny-r0',
      config_key: '3.24-x86_64-uefi-tiny-vm-azure',
      cloud: 'azure',
      revision: 0,
      actions: ['publish'],
      undo: ['upload', 'local'],
      rollback_blocked: false,
      revised: false,
    });
  });

  it('uses $COLUMNS, else the terminal, else no limit', () => {
    expect(terminalWidth({ COLUMNS: '72' }, { isTTY: false })).toBe(72);
    expect(terminalWidth({}, { isTTY: true, columns: 100 })).toBe(100);
    expect(terminalWidth({}, { isTTY: false, columns: 100 })).toBeUndefined();
  });

  it('helpers', () => {
    expect(ellipsize('abcdefghij', 5)).toBe('ab…ij');
    expect(fitTable([{ header: 'A' }, { header: 'B' }], [['x', 'y']])).toBe('A  B\nx  y');
  });
});

describe('artifacts table', () => {
  it('lists the image file of each built variant and the id per region of each published image', () => {
    const a = image('aws');
    a.record({ ...a.state, built: '2026-01-01T00:00:00Z' });
    const b = image('azure');
    b.record({
      ...b.state,
      built: '2026-01-01T00:00:00Z',
      artifacts: { 'us-east-1': 'ami-1', 'eu-west-1': 'ami-2' },
    });
    const c = image('gcp');
    c.record({ ...c.state, import_id: 'img-9', import_region: 'us-west1' });
    const ran = new Map([
      [a, new Set(['local'])],
      [b, new Set(['local', 'publish'])],
      [c, new Set(['import'])],
    ]);
    const art = collectArtifacts(ran, new Set(['3.24-x86_64-uefi-tiny-vm-azure']), '/w');
    expect(art.local.map((r) => r.what)).toEqual([
      'images/aws/3.24-x86_64-uefi-tiny-vm-aws/alpine-3.24.1-x86_64-uefi-tiny-r0.vhd',
    ]);
    expect(art.cloud).toEqual([
      { image: 'alpine-3.24.1-x86_64-uefi-tiny-r0', where: 'us-west1', what: 'img-9' },
    ]);
    const text = formatArtifacts(collectArtifacts(ran, new Set(), '/w'), '/w', 80);
    expect(text).toMatch(/^Built 2 image files \(under \/w\):\nVARIANT\s+FILE\n/);
    expect(text).toMatch(/Cloud images \(3\):\nIMAGE\s+REGION\s+ARTIFACT\n/);
    expect(text).toMatch(/eu-west-1\s+ami-2\n.*us-east-1\s+ami-1/);
    for (const l of text.split('\n')) expect(l.length).toBeLessThanOrEqual(80);
  });
});
