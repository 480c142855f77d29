/**
 * The `project` config value tags every cloud image and is how imports are found again. The shipped configs carry
 * a placeholder that must be replaced before importing anything into a real account.
 */
import { PROJECT_PLACEHOLDER } from '../config/project.js';

export const PLACEHOLDER_PROJECT = PROJECT_PLACEHOLDER;

/** Empty, the shipped placeholder, or anything else that looks like one ("CHANGE-ME…", "my-…"). */
export function isPlaceholderProject(project: string | undefined | null): boolean {
  if (!project) return true;
  const p = project.toLowerCase();
  return p === PLACEHOLDER_PROJECT.toLowerCase() || p.startsWith('change-me') || p.startsWith('my-');
}

export function placeholderWarning(project: string | undefined | null): string {
  return (
    `project is "${project ?? ''}", a placeholder: set \`project\` in your configs to an identifier of your own ` +
    '(it tags every image and is how imports are found again)'
  );
}
