import { describe, expect, it } from 'vitest';
import { STEP_TABLE } from '../../src/steps/image-steps.js';
import { IMAGE_STEPS } from '../../src/steps/steps.js';

describe('the step table', () => {
  it('lists every image step once, in the chain order', () => {
    expect(STEP_TABLE.map((e) => e.step)).toEqual([...IMAGE_STEPS]);
  });

  it('gives each step its undo beside its run, or says why it has none', () => {
    const undos = STEP_TABLE.map((e) => [e.step, 'action' in e.undo ? e.undo.action : 'none']);
    expect(undos).toEqual([
      ['local', 'local'],
      ['test', 'none'],
      ['upload', 'upload'],
      ['import', 'import'],
      ['sign', 'none'],
      ['publish', 'none'],
      ['release', 'none'],
    ]);
    for (const e of STEP_TABLE) {
      if ('none' in e.undo) expect(e.undo.none.length).toBeGreaterThan(10);
      else expect(typeof e.undo.run).toBe('function');
      expect(typeof e.run).toBe('function');
    }
    // published and released images are never rolled back
    for (const step of ['publish', 'release'])
      expect(STEP_TABLE.find((e) => e.step === step)?.undo).toMatchObject({ none: /^refused/ });
  });
});
