import { describe, expect, it } from "vitest";
import { cutBytes, cutText, encodeEntry, entryFrame, framedLine, journalText, jsonString, severityOf, type LogEntry } from "./entry.js";
import { filePatterns, journalFilter } from "./filters.js";
import { entryOf, journalArgs } from "./journald.js";

describe("log entry rules", () => {
  it("cuts on a UTF-8 boundary so text plus [truncated] fits the limit", () => {
    expect(cutText("short", 256)).toBe("short");
    const cut = cutText("€".repeat(200), 256);
    expect(Buffer.byteLength(cut)).toBeLessThanOrEqual(256);
    expect(cut).toMatch(/^€+\[truncated\]$/);
    const bytes = cutBytes(Buffer.alloc(1000, 0xff), 256);
    expect(Buffer.byteLength(bytes)).toBeLessThanOrEqual(256);
    expect(bytes.endsWith("[truncated]")).toBe(true);
  });

  it("encodes an entry exactly as JSON.stringify does", () => {
    const e: LogEntry = { timestamp: "2026-01-01T00:00:00.000Z", source: "file", unit: "", path: '/var/log/"q".log', message: 'a "quoted"\n\u0000 line ✓', severity: "info", hostname: "h\\x" };
    expect(encodeEntry(e)).toBe(JSON.stringify(e));
    const j: LogEntry = { timestamp: "2026-01-01T00:00:00.000Z", source: "journald", unit: "x.service", message: "m", severity: "err", hostname: "h" };
    expect(encodeEntry(j)).toBe(JSON.stringify(j));
  });

  it("maps PRIORITY 0-7 to severities and anything else to info", () => {
    expect(["0", "3", "4", "7", "9", undefined, "x"].map(severityOf)).toEqual(["emerg", "err", "warning", "debug", "info", "info", "info"]);
  });

  it("decodes journald byte arrays with replacement", () => {
    expect(journalText([104, 105, 0xff])).toBe("hi\uFFFD");
    expect(journalText(null)).toBe("");
    expect(journalText(["first", "second"])).toBe("first");
  });

  it("unit filters keep the listed units (bare names are services) and plexd's own; severity defaults to info", () => {
    const f = journalFilter([{ unit: "nginx" }]);
    expect(f.keep("nginx.service", 6)).toBe(true);
    expect(f.keep("plexd.service", 6)).toBe(true);
    expect(f.keep("plexd-privhelper.service", 3)).toBe(true);
    expect(f.keep("sshd.service", 6)).toBe(false);
    expect(f.keep("nginx.service", 7)).toBe(false);
    expect(journalFilter([]).keep("", 6)).toBe(true);
    expect(journalFilter([{ severity: "warn" }]).keep("x", 5)).toBe(false);
    expect(journalFilter([{ severity: "debug" }]).keep("x", 7)).toBe(true);
  });

  it("tails the union of file sources and path filters", () => {
    expect(filePatterns(["journald", "/a.log", "/b/*.log"], [{ path: "/b/*.log" }, { path: "/c.log" }, { unit: "x" }])).toEqual(["/a.log", "/b/*.log", "/c.log"]);
  });

  it("journalctl runs with argv only, at now first and after the cursor later", () => {
    expect(journalArgs(undefined)).toEqual(["--follow", "--output=json", "--all", "--no-pager", "--lines=0"]);
    expect(journalArgs("s=1;i=2")).toContain("--after-cursor=s=1;i=2");
  });

  it("maps a journalctl JSON line, binary message included", () => {
    const line = JSON.stringify({ __CURSOR: "c1", __REALTIME_TIMESTAMP: "1700000000123456", PRIORITY: "4", _SYSTEMD_UNIT: "app.service", MESSAGE: [98, 0xff, 1] });
    const r = entryOf(line, { hostname: "h", filter: journalFilter([]), maxLine: 256 });
    expect(r.cursor).toBe("c1");
    expect(r.entry).toEqual({ timestamp: "2023-11-14T22:13:20.123Z", source: "journald", unit: "app.service", message: "b\uFFFD\u0001", severity: "warning", hostname: "h" });
    expect(entryOf("not json", { hostname: "h", filter: journalFilter([]), maxLine: 256 })).toEqual({});
    const dropped = entryOf(JSON.stringify({ __CURSOR: "c2", PRIORITY: "7", MESSAGE: "dbg" }), { hostname: "h", filter: journalFilter([]), maxLine: 256 });
    expect(dropped).toEqual({ cursor: "c2" });
  });

  it("a framed line is encodeEntry's text, plain message or not", () => {
    const meta = { timestamp: "2026-01-01T00:00:00.000Z", source: "file" as const, unit: "", path: "/var/log/a b.log", severity: "info" as const, hostname: "h" };
    const [head, tail] = entryFrame(meta);
    for (const message of ["plain", 'q"uote', "tab\t", "é ✓", "lone \ud800"]) expect(framedLine(head, tail, `${head}"`, `"${tail}`, message)).toBe(encodeEntry({ ...meta, message }));
  });

  it("jsonString quotes exactly as JSON.stringify does, plain or not", () => {
    for (const t of ["", "plain text 123", 'q"uote', "back\\slash", "tab\tnl\n\u0001\u001f\u007f", "é ü ß", "emoji 😀", "lone \ud800 high", "lone \udfff low", "\u2028\u2029"]) expect(jsonString(t)).toBe(JSON.stringify(t));
  });
});
