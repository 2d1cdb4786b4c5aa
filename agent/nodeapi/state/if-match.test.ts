import { describe, expect, it } from "vitest";
import { PlexdError } from "../../../proto/lib/errors.js";
import { checkDelete, parseIfMatchHeader, versionForPut } from "./if-match.js";

const codeOf = (fn: () => unknown): string | undefined => {
  try {
    fn();
    return undefined;
  } catch (err) {
    return PlexdError.from(err).code;
  }
};

// docs/node-api.md, row by row.
describe("If-Match table", () => {
  it("absent: update to v+1, or create at 1", () => {
    expect(versionForPut(5, undefined)).toBe(6);
    expect(versionForPut(undefined, undefined)).toBe(1);
    expect(codeOf(() => checkDelete(5, undefined))).toBeUndefined();
    expect(codeOf(() => checkDelete(undefined, undefined))).toBe("not_found");
  });
  it("0: aborted when the entry exists; create-only put, delete not_found when absent", () => {
    expect(codeOf(() => versionForPut(5, 0))).toBe("aborted");
    expect(versionForPut(undefined, 0)).toBe(1);
    expect(codeOf(() => checkDelete(5, 0))).toBe("aborted");
    expect(codeOf(() => checkDelete(undefined, 0))).toBe("not_found");
  });
  it("n = v: update to v+1 / delete", () => {
    expect(versionForPut(5, 5)).toBe(6);
    expect(codeOf(() => checkDelete(5, 5))).toBeUndefined();
  });
  it("n ≠ v: aborted; absent entry: aborted (put) / not_found (delete)", () => {
    expect(codeOf(() => versionForPut(5, 4))).toBe("aborted");
    expect(codeOf(() => versionForPut(5, 6))).toBe("aborted");
    expect(codeOf(() => versionForPut(undefined, 3))).toBe("aborted");
    expect(codeOf(() => checkDelete(5, 4))).toBe("aborted");
    expect(codeOf(() => checkDelete(undefined, 3))).toBe("not_found");
  });
  it("REST header accepts 5 and \"5\", rejects anything else", () => {
    expect(parseIfMatchHeader(undefined)).toBeUndefined();
    expect(parseIfMatchHeader("5")).toBe(5);
    expect(parseIfMatchHeader('"5"')).toBe(5);
    expect(parseIfMatchHeader("0")).toBe(0);
    for (const bad of ["", "*", "W/\"5\"", "-1", "5.0", "abc", '"5', "99999999999"]) {
      expect(codeOf(() => parseIfMatchHeader(bad)), bad).toBe("invalid_argument");
    }
  });
});
