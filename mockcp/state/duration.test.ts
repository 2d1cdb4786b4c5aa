import { describe, expect, it } from "vitest";
import { checkKeyName } from "../server/http.js";
import { formatDuration, parseDuration } from "./duration.js";

describe("parseDuration (§2.3 grammar)", () => {
  it.each([
    ["30s", 30_000],
    ["2.34s", 2340],
    ["500ms", 500],
    ["72h15m", 72 * 3_600_000 + 15 * 60_000],
    ["24h", 86_400_000],
    ["1m30s", 90_000],
  ])("%s = %d ms", (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it.each(["", "30", "s", "-1s", "1d", "1.s", " 30s"])("rejects %j", (text) => {
    expect(() => parseDuration(text)).toThrow(/invalid duration/);
  });

  it("formats back into the grammar", () => {
    for (const ms of [500, 30_000, 3_600_000, 90_000]) expect(parseDuration(formatDuration(ms))).toBe(ms);
  });
});

describe("checkKeyName (§2.1)", () => {
  it("accepts the grammar and rejects the rest", () => {
    for (const ok of ["a", "tls-cert", "A.b_c-1", "x".repeat(128)]) expect(checkKeyName(ok)).toBe(ok);
    for (const bad of ["", ".hidden", "-x", "a/b", "a b", "x".repeat(129), "ü"]) expect(() => checkKeyName(bad)).toThrow(/invalid key name/);
  });
});
