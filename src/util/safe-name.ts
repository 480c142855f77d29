// The safe character set of everything that becomes part of a file name, a work/ path, a storage path or a cloud
// image name: dimension keys (and so config_key and image_key), the parts of `name`, and the image name itself.
//
//   letters A-Z a-z, digits 0-9, and . _ + -   (plus { } around placeholders in `name` parts)
//   not empty, not starting with . or -, no "..", at most 128 characters
//
// So no "/" or "\", no "..", no spaces, no control or bidirectional characters, no shell metacharacters can reach
// a path or a command line through a name.

export const SAFE_NAME_RULE =
  'letters, digits and . _ + - only (not starting with . or -, no "..", at most 128 characters)';

const SAFE = /^[A-Za-z0-9_+][A-Za-z0-9._+-]{0,127}$/;
const SAFE_TEMPLATE = /^[A-Za-z0-9_+{][A-Za-z0-9._+{}-]{0,127}$/;

/** Is `s` a safe name (see the rule above)? */
export function isSafeName(s: string): boolean {
  return SAFE.test(s) && !s.includes('..');
}

/** Is `s` a safe name template: a safe name once its `{placeholder}`s are filled with safe names? */
export function isSafeNameTemplate(s: string): boolean {
  return SAFE_TEMPLATE.test(s) && !s.includes('..');
}

// C0 and C1 controls, DEL, and the bidirectional formatting characters (which can make text read differently
// from what it is: "Trojan Source")
const UNSAFE_TEXT = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/;

/** Does free text (a description, an id, a timestamp) hold control or bidirectional characters? */
export function hasUnsafeText(s: string): boolean {
  return UNSAFE_TEXT.test(s);
}
