import { describe, expect, it } from "vitest";
import { formatDuration, formatSeconds, isWireDuration, parseDuration, parseTimestamp, parseWireDuration, tryParseWireDuration } from "./duration.js";

describe("parseDuration: the local grammar (docs/config-reference.md)", () => {
  it.each([
    ["0s", 0],
    ["500ms", 500],
    ["90s", 90_000],
    ["1h30m", 5_400_000],
    ["2m30s250ms", 150_250],
    ["25h", 90_000_000],
  ])("%s = %i ms", (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it.each(["30", "", "1.5s", "2.34s", "10sec", "1d", "-5s", " 5s", "5 s", "s", "5S", "1e3ms", `${"9".repeat(20)}h`])("rejects %j", (text) => {
    expect(parseDuration(text)).toBeUndefined();
  });
});

describe("parseWireDuration: the wire grammar", () => {
  it.each([
    ["30s", 30_000],
    ["2.34s", 2340],
    ["300s", 300_000],
    ["72h15m", 72 * 3_600_000 + 15 * 60_000],
    ["24h", 86_400_000],
    ["1.5h", 5_400_000],
    ["250ms", 250],
    ["1m30s500ms", 90_500],
    ["0.5ms", 0.5],
  ])("%s = %d ms", (text, ms) => {
    expect(parseWireDuration(text)).toBeCloseTo(ms, 6);
    expect(isWireDuration(text)).toBe(true);
  });

  it.each(["", "1", "30", "1d", "-1s", "1.s", ".5s", "1 s", "s", "1h ", " 30s", "1e3s", `${"9".repeat(400)}h`])("rejects %j", (text) => {
    expect(() => parseWireDuration(text)).toThrow(expect.objectContaining({ code: "invalid_argument" }));
    expect(tryParseWireDuration(text)).toBe(undefined);
    expect(isWireDuration(text)).toBe(false);
  });

  it("tryParseWireDuration takes any value", () => {
    expect(tryParseWireDuration(30)).toBe(undefined);
    expect(tryParseWireDuration(null)).toBe(undefined);
  });
});

describe("formatDuration", () => {
  it("writes text both grammars read back", () => {
    expect(formatDuration(5_400_000)).toBe("1h30m");
    expect(formatDuration(150_250)).toBe("2m30s250ms");
    expect(formatDuration(0)).toBe("0s");
    for (const ms of [0, 1, 500, 999, 1000, 30_000, 61_001, 90_000, 3_600_000, 260_100_000]) {
      expect(parseDuration(formatDuration(ms))).toBe(ms);
      expect(parseWireDuration(formatDuration(ms))).toBe(ms);
    }
  });

  it("refuses what has no text", () => {
    for (const bad of [-1, 0.5, Number.NaN, Number.POSITIVE_INFINITY]) expect(() => formatDuration(bad)).toThrow(expect.objectContaining({ code: "invalid_argument" }));
  });

  it("formatSeconds truncates to whole seconds (uptimes, ages)", () => {
    expect(formatSeconds(72 * 3_600_000 + 15 * 60_000 + 999)).toBe("72h15m");
    expect(formatSeconds(3_723_000)).toBe("1h2m3s");
    expect(formatSeconds(999)).toBe("0s");
    expect(formatSeconds(-5)).toBe("0s");
  });
});

describe("parseTimestamp (RFC 3339 with a zone)", () => {
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

  it("reads a year below 100 literally (Date.UTC would make it 19xx)", () => {
    expect(new Date(parseTimestamp("0099-01-01T00:00:00Z") ?? Number.NaN).getUTCFullYear()).toBe(99);
  });

  it.each(["2025-01-15T10:30:00", "2025-01-15 10:30:00Z", "2025-02-29T00:00:00Z", "2025-13-01T00:00:00Z", "2025-01-15T24:00:00Z", "2025-01-15T10:30:00+0200", "2025-01-15T10:30:00+24:00", "x"])(
    "rejects %j",
    (text) => {
      expect(parseTimestamp(text)).toBe(undefined);
    },
  );
});
