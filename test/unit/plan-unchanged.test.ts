// Release only on change: a build whose content equals the published/released revision it was compared with.
import { describe, expect, it } from 'vitest';
import { type PlanInput, planActions } from '../../src/state/plan.js';
import { supplyForRevise, unchangedAs } from '../../src/supply/files.js';

const T = '2026-01-01T00:00:00.000Z';
const base: PlanInput = {
  target: 'release',
  revision: 2,
  built: T,
  localBuild: true,
  disable: [],
  revise: false,
  cloudActions: new Set(['import', 'publish', 'delete']),
  canSign: true,
};

describe('planActions with an unchanged build', () => {
  it('goes no further than local, and says why', () => {
    const p = planActions({ ...base, unchangedAs: 1 });
    expect(p.actions).toEqual([]);
    expect(p.unchanged).toBe(1);
    expect(p.notes).toContain('unchanged (same content as r1)');
  });

  it('--publish-unchanged forces the release', () => {
    const p = planActions({ ...base, unchangedAs: 1, publishUnchanged: true });
    expect(p.actions).toEqual(['test', 'upload', 'import', 'sign', 'publish', 'release']);
    expect(p.unchanged).toBeUndefined();
  });

  it('--revise builds the unchanged revision again (its packages may have changed) without a new number', () => {
    const p = planActions({ ...base, unchangedAs: 1, revise: true });
    expect(p.revised).toBe(true);
    expect(p.revision).toBe(2);
    expect(p.undo).toEqual(['local']);
    expect(p.actions).toEqual(['local', 'test', 'upload', 'import', 'sign', 'publish', 'release']);
  });

  it('a build that changed is released as usual', () => {
    expect(planActions({ ...base, unchangedAs: null }).actions).toEqual([
      'test',
      'upload',
      'import',
      'sign',
      'publish',
      'release',
    ]);
  });
});

describe('the supply record across --revise', () => {
  const released = { content_digest: 'sha256:aa', packages: 3, files: {} };
  it('compares the new build with the revision left behind', () => {
    const s = supplyForRevise(released, 1, true)!;
    expect(s.baseline).toEqual({ revision: 1, content_digest: 'sha256:aa' });
    expect(unchangedAs({ ...s, content_digest: 'sha256:aa' })).toBe(1);
    expect(unchangedAs({ ...s, content_digest: 'sha256:bb' })).toBeNull();
  });
  it('a rebuild keeps its baseline; a revision without a digest never counts as unchanged', () => {
    const s = supplyForRevise(
      { ...released, baseline: { revision: 1, content_digest: 'sha256:aa' } },
      2,
      false,
    )!;
    expect(s.baseline).toEqual({ revision: 1, content_digest: 'sha256:aa' });
    const none = supplyForRevise(null, 1, true)!;
    expect(unchangedAs({ ...none, content_digest: 'sha256:aa' })).toBeNull();
  });
});
