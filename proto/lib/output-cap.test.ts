import { describe, expect, it } from "vitest";
import { CappedBuffer, capText, truncatedMarker } from "./output-cap.js";

const bytes = (s: string) => Buffer.byteLength(s);

describe("output cap", () => {
  it("keeps output within the limit untouched", () => {
    expect(capText(Buffer.from("hello"), 1024)).toBe("hello");
  });

  it("cuts long output to the limit, marker included", () => {
    const out = capText(Buffer.from("x".repeat(5000)), 1024);
    expect(bytes(out)).toBe(1024);
    expect(out.endsWith(truncatedMarker)).toBe(true);
  });

  it("never cuts inside a UTF-8 sequence, whatever the offset", () => {
    for (let shift = 0; shift < 4; shift++) {
      const s = "a".repeat(shift) + "€😀ü".repeat(400);
      const out = capText(Buffer.from(s), 1024);
      expect(bytes(out)).toBeLessThanOrEqual(1024);
      expect(out).not.toContain("\ufffd");
      expect(s.startsWith(out.slice(0, -truncatedMarker.length))).toBe(true);
    }
  });

  it("counts invalid bytes as their replacement characters", () => {
    const out = capText(Buffer.alloc(1000, 0xff), 1024);
    expect(bytes(out)).toBeLessThanOrEqual(1024);
    expect(out.endsWith(truncatedMarker)).toBe(true);
  });

  it("buffers only what can be shown, and marks a stream cut at any chunk", () => {
    const b = new CappedBuffer(1024);
    for (let i = 0; i < 1000; i++) b.push(Buffer.from("0123456789"));
    const out = b.text();
    expect(bytes(out)).toBe(1024);
    expect(out.endsWith(truncatedMarker)).toBe(true);
    const exact = new CappedBuffer(10);
    exact.push(Buffer.from("0123456789"));
    expect(exact.text()).toBe("0123456789");
  });
});
