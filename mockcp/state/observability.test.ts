import { describe, expect, it } from "vitest";
import { decodeItems } from "./observability.js";

const good = { timestamp: "2026-12-03T19:00:00.000Z", source: "file", unit: "", path: "/var/log/a.log", message: "hello", severity: "info", hostname: "h" };
const ndjson = (...items: unknown[]): string => items.map((i) => JSON.stringify(i)).join("\n") + "\n";

describe("log ingestion checks (fast path and schema agree)", () => {
  it("accepts well-formed lines, many sharing a timestamp, unknown members ignored", () => {
    const items = [good, { ...good, message: "é".repeat(8000) }, { ...good, timestamp: "2026-12-03T19:00:01+02:00", extra: 1 }, good];
    expect(decodeItems("logs", ndjson(...items))).toEqual(items);
  });

  it("rejects every broken field with the schema's message, also after good lines with the same timestamp", () => {
    const bad: [unknown, RegExp][] = [
      [{ ...good, timestamp: "2026-13-03T19:00:00Z" }, /logs line 2: timestamp: must be an RFC 3339 timestamp/],
      [{ ...good, timestamp: 5 }, /logs line 2: timestamp:/],
      [{ ...good, source: 1 }, /logs line 2: source:/],
      [{ ...good, unit: null }, /logs line 2: unit:/],
      [{ ...good, hostname: undefined }, /logs line 2: hostname:/],
      [{ ...good, severity: "warn" }, /logs line 2: severity:/],
      [{ ...good, message: "x".repeat(16 * 1024 + 12) }, /logs line 2: message: longer than 16 KiB/],
      [{ ...good, message: "€".repeat(5500) }, /logs line 2: message: longer than 16 KiB/],
      [[good], /logs line 2: \(item\):/],
      ["text", /logs line 2: \(item\):/],
    ];
    for (const [item, msg] of bad) expect(() => decodeItems("logs", ndjson(good, item)), JSON.stringify(item).slice(0, 60)).toThrow(msg);
  });

  it("a message of exactly 16 KiB plus [truncated] in multi-byte text is accepted", () => {
    const m = "€".repeat(5461) + "x" + "[truncated]"; // 16,383 + 1 + 11 bytes
    expect(Buffer.byteLength(m)).toBe(16 * 1024 + 11);
    expect(decodeItems("logs", ndjson({ ...good, message: m }))).toHaveLength(1);
  });
});
