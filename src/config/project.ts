/** The `project` of the default configs: set your own (import and publish warn while it is still this). */
export const PROJECT_PLACEHOLDER = 'CHANGE-ME-cloud-images-project';
