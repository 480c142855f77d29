import { describe, expect, it } from 'vitest';
import { type PlanInput, planActions } from '../../src/state/plan.js';
import type { OptionalStep, Step } from '../../src/steps/steps.js';

const AWS = new Set(['import', 'publish', 'delete', 'list']);
const NOCLOUD = new Set<string>();
const T = '2026-01-01T00:00:00.000Z';

type Meta = Partial<Pick<PlanInput, 'built' | 'uploaded' | 'imported' | 'signed' | 'published' | 'released'>>;
const NONE: Meta = {};
const BUILT: Meta = { built: T };
const UPLOADED: Meta = { built: T, uploaded: T };
const IMPORTED: Meta = { ...UPLOADED, imported: T };
const SIGNED: Meta = { ...IMPORTED, signed: T };
const PUBLISHED: Meta = { ...SIGNED, published: T };
const RELEASED: Meta = { ...PUBLISHED, released: T };

interface Case {
  target: Step;
  meta: Meta;
  cloud?: ReadonlySet<string>;
  disable?: OptionalStep[];
  revise?: boolean;
  localBuild?: boolean;
  canSign?: boolean;
  /** the build has no passing boot test (default: it has one) */
  testNeeded?: boolean;
  actions: string[];
  undo?: string[];
  blocked?: boolean;
  revision?: number;
}

const cases: [string, Case][] = [
  ['configs does nothing', { target: 'configs', meta: NONE, actions: [] }],
  [
    'state reports the full chain',
    {
      target: 'state',
      meta: NONE,
      actions: ['local', 'test', 'upload', 'import', 'sign', 'publish', 'release'],
    },
  ],
  ['local from nothing', { target: 'local', meta: NONE, actions: ['local'] }],
  ['local already built', { target: 'local', meta: BUILT, localBuild: true, actions: [] }],
  [
    'built elsewhere, not uploaded, missing here: rebuild',
    { target: 'upload', meta: BUILT, localBuild: false, actions: ['local', 'test', 'upload'] },
  ],
  [
    'built elsewhere and uploaded: nothing local needed',
    { target: 'upload', meta: UPLOADED, localBuild: false, actions: [] },
  ],
  ['upload after local', { target: 'upload', meta: BUILT, localBuild: true, actions: ['upload'] }],
  [
    'import chain from nothing',
    { target: 'import', meta: NONE, actions: ['local', 'test', 'upload', 'import'] },
  ],
  [
    'import on nocloud is skipped',
    { target: 'import', meta: NONE, cloud: NOCLOUD, actions: ['local', 'test', 'upload'] },
  ],
  ['import already imported', { target: 'import', meta: IMPORTED, actions: [] }],
  ['--disable import disables it', { target: 'import', meta: UPLOADED, disable: ['import'], actions: [] }],
  ['sign needs a signing config', { target: 'sign', meta: IMPORTED, canSign: false, actions: [] }],
  ['sign when configured', { target: 'sign', meta: IMPORTED, actions: ['sign'] }],
  ['--disable sign', { target: 'publish', meta: IMPORTED, disable: ['sign'], actions: ['publish'] }],
  ['already signed is not signed again', { target: 'sign', meta: SIGNED, actions: [] }],
  ['publish always re-runs', { target: 'publish', meta: PUBLISHED, actions: ['publish'] }],
  ['publish on nocloud is skipped', { target: 'publish', meta: UPLOADED, cloud: NOCLOUD, actions: ['sign'] }],
  ['--disable publish', { target: 'publish', meta: SIGNED, disable: ['publish'], actions: [] }],
  ['release after publish does not re-publish', { target: 'release', meta: PUBLISHED, actions: ['release'] }],
  [
    'release of unpublished publishes first',
    { target: 'release', meta: SIGNED, actions: ['publish', 'release'] },
  ],
  ['released is done', { target: 'release', meta: RELEASED, actions: [] }],
  ['release on nocloud', { target: 'release', meta: UPLOADED, cloud: NOCLOUD, actions: ['sign', 'release'] }],
  [
    'rollback of an imported image',
    {
      target: 'rollback',
      meta: IMPORTED,
      localBuild: true,
      actions: [],
      undo: ['import', 'upload', 'local'],
    },
  ],
  [
    'rollback of an uploaded nocloud image',
    {
      target: 'rollback',
      meta: UPLOADED,
      cloud: NOCLOUD,
      localBuild: true,
      actions: [],
      undo: ['upload', 'local'],
    },
  ],
  ['rollback with nothing', { target: 'rollback', meta: NONE, actions: [], undo: [] }],
  [
    'rollback refused when published',
    { target: 'rollback', meta: PUBLISHED, actions: [], undo: [], blocked: true },
  ],
  [
    'rollback refused when released',
    { target: 'rollback', meta: RELEASED, actions: [], undo: [], blocked: true },
  ],
  [
    '--revise of a published image rebuilds as r1',
    {
      target: 'publish',
      meta: PUBLISHED,
      revise: true,
      localBuild: true,
      actions: ['local', 'test', 'upload', 'import', 'sign', 'publish'],
      undo: ['local'],
      revision: 1,
    },
  ],
  [
    '--revise of a released image, target local',
    { target: 'local', meta: RELEASED, revise: true, actions: ['local'], revision: 1 },
  ],
  [
    '--revise does nothing to an unpublished image',
    { target: 'publish', meta: IMPORTED, revise: true, actions: ['sign', 'publish'], revision: 0 },
  ],
  ['test after local', { target: 'test', meta: NONE, actions: ['local', 'test'] }],
  [
    'a build without a passing test is tested',
    { target: 'test', meta: BUILT, localBuild: true, testNeeded: true, actions: ['test'] },
  ],
  [
    'an untested build is tested before upload',
    { target: 'upload', meta: BUILT, localBuild: true, testNeeded: true, actions: ['test', 'upload'] },
  ],
  [
    'a tested build is not tested again',
    { target: 'upload', meta: BUILT, localBuild: true, actions: ['upload'] },
  ],
  ['--disable test', { target: 'upload', meta: NONE, disable: ['test'], actions: ['local', 'upload'] }],
  [
    'state shows a test still to do',
    {
      target: 'state',
      meta: UPLOADED,
      testNeeded: true,
      actions: ['test', 'import', 'sign', 'publish', 'release'],
    },
  ],
  [
    '--revise with --disable import',
    {
      target: 'publish',
      meta: PUBLISHED,
      revise: true,
      disable: ['import', 'publish'],
      actions: ['local', 'test', 'upload', 'sign'],
      revision: 1,
    },
  ],
];

describe('planActions', () => {
  it.each(cases)('%s', (_name, c) => {
    const plan = planActions({
      target: c.target,
      revision: 0,
      ...c.meta,
      localBuild: c.localBuild ?? false,
      disable: c.disable ?? [],
      revise: c.revise ?? false,
      cloudActions: c.cloud ?? AWS,
      canSign: c.canSign ?? true,
      testNeeded: c.testNeeded ?? false,
    });
    expect(plan.actions).toEqual(c.actions);
    if (c.undo) expect(plan.undo).toEqual(c.undo);
    expect(plan.rollbackBlocked).toBe(c.blocked ?? false);
    expect(plan.revision).toBe(c.revision ?? 0);
    expect(plan.revised).toBe((c.revision ?? 0) > 0);
  });

  it('orders actions by step whatever the input', () => {
    const plan = planActions({
      target: 'release',
      revision: 3,
      localBuild: false,
      disable: [],
      revise: false,
      cloudActions: AWS,
      canSign: true,
    });
    expect(plan.actions).toEqual(['local', 'test', 'upload', 'import', 'sign', 'publish', 'release']);
    expect(plan.revision).toBe(3);
  });
});
