/**
 * The `project` config value tags every cloud image and is how imports are found again. The shipped configs carry
 * a placeholder that must be replaced before importing anything into a real account.
 */
export const PLACEHOLDER_PROJECT = 'my-project-identifier';

/** The placeholder itself, anything else starting with "my-", or empty. */
export function isPlaceholderProject(project: string | undefined | null): boolean {
  return !project || project === PLACEHOLDER_PROJECT || project.startsWith('my-');
}

export function placeholderWarning(project: string | undefined | null): string {
  return (
    `project is "${project ?? ''}", a placeholder: set \`project\` in your configs to an identifier of your own ` +
    '(it tags every image and is how imports are found again)'
  );
}
