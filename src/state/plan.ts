import { IMAGE_STEPS, type ImageStep, type OptionalStep, type Step, stepAtOrBefore } from '../steps/steps.js';

/** What the state step knows about one variant's latest revision. Pure data. */
export interface PlanInput {
  target: Step;
  revision: number;
  built?: string | null;
  uploaded?: string | null;
  imported?: string | null;
  signed?: string | null;
  published?: string | null;
  released?: string | null;
  /** the converted image file exists in the local image directory */
  localBuild: boolean;
  disable: readonly OptionalStep[];
  revise: boolean;
  /** actions the variant's cloud plugin supports */
  cloudActions: ReadonlySet<string>;
  /** signing_cmd or signing_key is configured */
  canSign: boolean;
  /** the build has the same content as this published/released revision (supply.unchanged_as) */
  unchangedAs?: number | null;
  /** --publish-unchanged: upload, import and publish such a build all the same */
  publishUnchanged?: boolean;
  /** the latest build has no passing boot test (never ran, failed, skipped, or an older build's); default true */
  testNeeded?: boolean;
}

export type UndoAction = 'import' | 'upload' | 'local';

export interface Plan {
  actions: ImageStep[];
  /** what rollback (or a --revise bump) removes; for `state` only reported */
  undo: UndoAction[];
  /** rollback refused: the image is published or released */
  rollbackBlocked: boolean;
  /** the revision the run works on (bumped by --revise) */
  revision: number;
  /** --revise bumped the revision: step timestamps start over */
  revised: boolean;
  /** why steps were left out, for the log */
  notes: string[];
  /** not uploaded, imported or published: same content as this revision */
  unchanged?: number;
}

function stepIncluded(s: ImageStep, target: Step): boolean {
  // `state` reports everything a full release would still do; rollback does no forward step
  if (target === 'state') return true;
  if (target === 'configs' || target === 'rollback') return false;
  return stepAtOrBefore(s, target);
}

/**
 * Decide, for one variant, which steps are still to do and what a rollback would undo.
 * Mirrors alpine-cloud-images' refresh_state, made pure (no I/O) so every case is unit-testable.
 */
export function planActions(planInput: PlanInput): Plan {
  let input = planInput;
  const notes: string[] = [];
  const undo: UndoAction[] = [];
  let rollbackBlocked = false;
  let revision = input.revision;
  let revised = false;
  let { built, uploaded, imported, signed, published, released } = input;
  let localBuild = input.localBuild;

  if (input.target === 'rollback') {
    if (released || published) {
      rollbackBlocked = true;
      notes.push(released ? 'released: rollback refused' : 'published: rollback refused');
    } else {
      if (imported && input.cloudActions.has('delete')) undo.push('import');
      if (uploaded) undo.push('upload');
      if (built || localBuild) undo.push('local');
    }
  }

  if (input.revise && (published || released)) {
    revision += 1;
    revised = true;
    notes.push(`revised: r${input.revision} -> r${revision}`);
    built = uploaded = imported = signed = published = released = null;
    input = { ...input, testNeeded: true };
    // the old revision's local files go; a build already made for a newer revision is found as the latest
    // revision by the state step and reused without any bump
    if (input.localBuild) undo.push('local');
    localBuild = false;
  }

  const unchangedAs = input.unchangedAs ?? undefined;
  if (input.revise && !revised && unchangedAs !== undefined && !uploaded && !published && !released) {
    // a build that came out the same as a released revision waits unreleased: --revise builds it again,
    // as the packages may have changed since
    revised = true;
    notes.push(`rebuilding r${revision}: its last build had the same content as r${unchangedAs}`);
    built = uploaded = imported = signed = null;
    if (input.localBuild) undo.push('local');
    localBuild = false;
  }

  const disabled = new Set<string>(input.disable);
  const actions = new Set<ImageStep>(
    IMAGE_STEPS.filter((s) => stepIncluded(s, input.target) && !disabled.has(s)),
  );

  // a build recorded in metadata but missing here is only usable once uploaded
  if (built && (localBuild || uploaded)) actions.delete('local');
  // a new build is always tested; an existing one when its latest test did not pass
  if (!actions.has('local') && input.testNeeded === false) actions.delete('test');
  if (uploaded) actions.delete('upload');
  if (imported || !input.cloudActions.has('import')) {
    if (!imported && actions.has('import')) notes.push('cloud does not support import');
    actions.delete('import');
  }
  if (signed || !input.canSign) {
    if (!signed && actions.has('sign')) notes.push('no signing_cmd or signing_key configured');
    actions.delete('sign');
  }
  // publish always re-runs (new regions, permissions) unless released-targeted and already published
  if (!input.cloudActions.has('publish')) {
    if (actions.has('publish')) notes.push('cloud does not support publish');
    actions.delete('publish');
  } else if (input.target === 'release' && published) {
    actions.delete('publish');
  }
  if (released) actions.delete('release');

  let unchanged: number | undefined;
  if (!revised && unchangedAs !== undefined && !uploaded && !input.publishUnchanged) {
    for (const s of ['test', 'upload', 'import', 'sign', 'publish', 'release'] as const) actions.delete(s);
    unchanged = unchangedAs;
    notes.push(`unchanged (same content as r${unchangedAs})`);
  }

  return {
    actions: IMAGE_STEPS.filter((s) => actions.has(s)),
    undo,
    rollbackBlocked,
    revision,
    revised,
    notes,
    ...(unchanged !== undefined ? { unchanged } : {}),
  };
}
