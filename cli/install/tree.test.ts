import { lstatSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { apply, plan, planEntry, type Seen, type Wanted } from "./tree.js";

const root = { uid: 0, gid: 0 };
const rootPlexd = { uid: 0, gid: 999 };
const file = (_content: string, mode = 0o644): Seen => ({ kind: "file", mode, uid: 0, gid: 0 });
const bytes = (s: string): Buffer => Buffer.from(s);

describe("planEntry", () => {
  it("creates what is absent", () => {
    expect(planEntry({ kind: "dir", path: "/d", mode: 0o700, owner: root }, { kind: "absent" }, () => bytes(""))).toEqual([{ op: "mkdir", path: "/d", mode: 0o700, owner: root }]);
    expect(planEntry({ kind: "file", path: "/f", mode: 0o640, owner: rootPlexd, content: bytes("x") }, { kind: "absent" }, () => bytes(""))).toEqual([
      { op: "write", path: "/f", mode: 0o640, owner: rootPlexd, content: bytes("x"), replaces: false },
    ]);
    expect(planEntry({ kind: "link", path: "/l", target: "t" }, { kind: "absent" }, () => bytes(""))).toEqual([{ op: "link", path: "/l", target: "t" }]);
  });

  it("plans nothing for what is already right (the idempotent second install)", () => {
    expect(planEntry({ kind: "dir", path: "/d", mode: 0o755, owner: root }, { kind: "dir", mode: 0o755, uid: 0, gid: 0 }, () => bytes(""))).toEqual([]);
    expect(planEntry({ kind: "file", path: "/f", mode: 0o644, owner: root, content: bytes("same") }, file("same"), () => bytes("same"))).toEqual([]);
    expect(planEntry({ kind: "link", path: "/l", target: "t" }, { kind: "link", target: "t" }, () => bytes(""))).toEqual([]);
    expect(planEntry({ kind: "absent", path: "/x" }, { kind: "absent" }, () => bytes(""))).toEqual([]);
  });

  it("replaces a file whose content differs, keeps one marked keep, and only fixes owner and mode then", () => {
    expect(planEntry({ kind: "file", path: "/f", mode: 0o644, owner: root, content: bytes("new") }, file("old"), () => bytes("old"))).toEqual([
      { op: "write", path: "/f", mode: 0o644, owner: root, content: bytes("new"), replaces: true },
    ]);
    // An existing config stays as the operator wrote it; its owner and mode are set.
    expect(planEntry({ kind: "file", path: "/c", mode: 0o640, owner: rootPlexd, content: bytes("default"), keep: true }, file("mine", 0o644), () => bytes("mine"))).toEqual([
      { op: "chown", path: "/c", owner: rootPlexd },
      { op: "chmod", path: "/c", mode: 0o640 },
    ]);
  });

  it("brings an existing token without new content to owner and mode, and creates none when absent", () => {
    const w: Wanted = { kind: "file", path: "/t", mode: 0o640, owner: rootPlexd };
    expect(planEntry(w, { kind: "absent" }, () => bytes(""))).toEqual([]);
    expect(planEntry(w, { kind: "file", mode: 0o640, uid: 0, gid: 0 }, () => bytes(""))).toEqual([
      { op: "chown", path: "/t", owner: rootPlexd },
      { op: "chmod", path: "/t", mode: 0o640 },
    ]);
    expect(planEntry(w, { kind: "file", mode: 0o600, uid: 0, gid: 999 }, () => bytes(""))).toEqual([{ op: "chmod", path: "/t", mode: 0o640 }]);
  });

  it("leaves a system directory's owner and mode as the distribution has them", () => {
    expect(planEntry({ kind: "dir", path: "/usr/local/bin", mode: 0o755, owner: root, onlyCreate: true }, { kind: "dir", mode: 0o2775, uid: 0, gid: 50 }, () => bytes(""))).toEqual([]);
  });

  it("replaces something of the wrong kind, and repoints a link", () => {
    expect(planEntry({ kind: "dir", path: "/d", mode: 0o755, owner: root }, file("x"), () => bytes("x"))).toEqual([
      { op: "remove", path: "/d" },
      { op: "mkdir", path: "/d", mode: 0o755, owner: root },
    ]);
    expect(planEntry({ kind: "link", path: "/l", target: "new" }, { kind: "link", target: "old" }, () => bytes(""))).toEqual([{ op: "link", path: "/l", target: "new" }]);
    expect(planEntry({ kind: "absent", path: "/x" }, { kind: "dir", mode: 0o755, uid: 0, gid: 0 }, () => bytes(""))).toEqual([{ op: "remove", path: "/x" }]);
  });
});

describe("plan and apply on disk", () => {
  let dir: string | undefined;
  afterEach(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("carries the plan out, and a second plan over the result is empty", () => {
    dir = mkdtempSync(join(tmpdir(), "plexd-install-tree-"));
    mkdirSync(join(dir, "stale"));
    writeFileSync(join(dir, "stale", "old.js"), "old");
    const wanted: Wanted[] = [
      { kind: "dir", path: join(dir, "etc", "plexd"), mode: 0o755, owner: root },
      { kind: "file", path: join(dir, "etc", "plexd", "token"), mode: 0o640, owner: root, content: bytes("secret\n") },
      { kind: "link", path: join(dir, "bin", "plexd"), target: "../lib/plexd.js" },
      { kind: "absent", path: join(dir, "stale") },
    ];
    apply(plan(wanted));
    expect(statSync(join(dir, "etc", "plexd")).mode & 0o7777).toBe(0o755);
    expect(statSync(join(dir, "etc", "plexd", "token")).mode & 0o7777).toBe(0o640);
    expect(readFileSync(join(dir, "etc", "plexd", "token"), "utf8")).toBe("secret\n");
    expect(readlinkSync(join(dir, "bin", "plexd"))).toBe("../lib/plexd.js");
    expect(() => lstatSync(join(dir!, "stale"))).toThrow();
    expect(plan(wanted)).toEqual([]);
  });
});
