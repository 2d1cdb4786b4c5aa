import { describe, expect, it } from "vitest";
import { fitColumns, fitSegments, pad } from "./layout.js";

describe("layout", () => {
  it("fitSegments leaves out whole segments by priority and keeps the order", () => {
    const segs = [
      { text: "node_abc", priority: 0 },
      { text: "10.100.0.7", priority: 1 },
      { text: "v0.1.0", priority: 3 },
      { text: "connected", priority: 0 },
    ];
    expect(fitSegments(segs, 80).map((s) => s.text)).toEqual(["node_abc", "10.100.0.7", "v0.1.0", "connected"]);
    expect(fitSegments(segs, 33).map((s) => s.text)).toEqual(["node_abc", "10.100.0.7", "connected"]);
    expect(fitSegments(segs, 20).map((s) => s.text)).toEqual(["node_abc", "connected"]);
  });

  it("fitColumns sizes by content and drops low-priority columns whole", () => {
    const rows = [{ a: "alpha", b: "10.100.0.2", c: "192.0.2.2:51820" }];
    const cols = [
      { key: "a", title: "PEER", priority: 0, max: 20, cell: (r: (typeof rows)[0]) => r.a },
      { key: "c", title: "ENDPOINT", priority: 2, max: 21, cell: (r: (typeof rows)[0]) => r.c },
      { key: "b", title: "MESH IP", priority: 1, max: 15, cell: (r: (typeof rows)[0]) => r.b },
    ];
    expect(fitColumns(cols, rows, 80).map((c) => [c.key, c.width])).toEqual([["a", 5], ["c", 15], ["b", 10]]);
    expect(fitColumns(cols, rows, 20).map((c) => c.key)).toEqual(["a", "b"]);
    expect(pad("abcdef", 4)).toBe("abc…");
    expect(pad("7", 3, "right")).toBe("  7");
  });
});
