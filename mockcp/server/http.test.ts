import { describe, expect, it } from "vitest";
import { checkKeyName } from "./http.js";

describe("checkKeyName", () => {
  it("accepts the grammar and rejects the rest", () => {
    for (const ok of ["a", "tls-cert", "A.b_c-1", "x".repeat(128)]) expect(checkKeyName(ok)).toBe(ok);
    for (const bad of ["", ".hidden", "-x", "a/b", "a b", "x".repeat(129), "ü"]) expect(() => checkKeyName(bad)).toThrow(/invalid key name/);
  });
});
