import { PlexdError } from "../../../proto/lib/errors.js";

// The If-Match table of docs/node-api.md, as two pure functions so the table can be
// tested cell by cell. `current` is the stored version, undefined when the entry is absent.

/** Version a put writes, or throws `aborted`. */
export function versionForPut(current: number | undefined, ifMatch: number | undefined): number {
  if (ifMatch === undefined) return (current ?? 0) + 1;
  if (ifMatch === 0) {
    if (current !== undefined) throw new PlexdError("aborted", "entry already exists (If-Match: 0 means create only)");
    return 1;
  }
  if (current === undefined) throw new PlexdError("aborted", `version mismatch: entry does not exist, If-Match ${ifMatch}`);
  if (ifMatch !== current) throw new PlexdError("aborted", `version mismatch: entry is at ${current}, If-Match ${ifMatch}`);
  return current + 1;
}

/** Throws `not_found` or `aborted` when the delete may not proceed. */
export function checkDelete(current: number | undefined, ifMatch: number | undefined): void {
  if (current === undefined) throw new PlexdError("not_found", "no such report entry");
  if (ifMatch === undefined) return;
  if (ifMatch === 0) throw new PlexdError("aborted", "entry exists (If-Match: 0)");
  if (ifMatch !== current) throw new PlexdError("aborted", `version mismatch: entry is at ${current}, If-Match ${ifMatch}`);
}

/**
 * REST `If-Match` header: `5` or `"5"` (an ETag as sent back by GetReport). Anything else is
 * invalid_argument; an absent header is undefined.
 */
export function parseIfMatchHeader(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const m = /^\s*(?:"(\d{1,10})"|(\d{1,10}))\s*$/.exec(value);
  const digits = m?.[1] ?? m?.[2];
  const n = digits === undefined ? NaN : Number(digits);
  if (!Number.isInteger(n) || n < 0 || n > 2 ** 31 - 1) {
    throw new PlexdError("invalid_argument", `If-Match must be a version number such as 5 or "5", got ${JSON.stringify(value)}`);
  }
  return n;
}
