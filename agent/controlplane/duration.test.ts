import { describe, expect, it } from "vitest";
import { parseDuration, parseTimestamp, tryParseDuration } from "./duration.js";

describe("parseDuration", () => {
  it.each([
    ["30s", 30_000],
    ["2.34s", 2340],
    ["300s", 300_000],
    ["72h15m", 72 * 3_600_000 + 15 * 60_000],
    ["24h", 86_400_000],
    ["1.5h", 5_400_000],
    ["250ms", 250],
    ["1m30s500ms", 90_500],
  ])("%s = %d ms", (text, ms) => {
    expect(parseDuration(text)).toBeCloseTo(ms, 6);
  });

  it.each(["", "1", "1d", "-1s", "1.s", ".5s", "1 s", "s", "1h ", "1e3s"])("rejects %j", (text) => {
    expect(() => parseDuration(text)).toThrow(expect.objectContaining({ code: "invalid_argument" }));
    expect(tryParseDuration(text)).toBe(undefined);
  });
});

describe("parseTimestamp", () => {
  const T = Date.UTC(2025, 0, 15, 10, 30, 0);
  it.each([
    ["2025-01-15T10:30:00Z", T],
    ["2025-01-15T10:30:00.000Z", T],
    ["2025-01-15t10:30:00z", T],
    ["2025-01-15T10:30:00.123456789Z", T + 123.456789],
    ["2025-01-15T12:30:00+02:00", T],
    ["2025-01-15T05:00:00-05:30", T],
    ["2024-02-29T00:00:00Z", Date.UTC(2024, 1, 29)],
  ])("%s", (text, ms) => {
    expect(parseTimestamp(text)).toBeCloseTo(ms, 3);
  });

  it.each(["2025-01-15T10:30:00", "2025-01-15 10:30:00Z", "2025-02-29T00:00:00Z", "2025-13-01T00:00:00Z", "2025-01-15T24:00:00Z", "2025-01-15T10:30:00+0200", "x"])(
    "rejects %j",
    (text) => {
      expect(parseTimestamp(text)).toBe(undefined);
    },
  );
});
