import { PlexdError } from "../../../proto/lib/errors.js";

// Report, data and secret keys become file names under data_dir/state, so the grammar
// (the control plane's, docs/mockcp.md) excludes separators and dot-only names.
const keyRe = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export function isValidKey(key: string): boolean {
  return keyRe.test(key);
}

export function assertValidKey(key: string): void {
  if (!isValidKey(key)) throw new PlexdError("invalid_argument", `invalid key ${JSON.stringify(key)}: must match ${keyRe.source}`);
}
