import { describe, expect, it } from "vitest";
import { checkApiUrl, checkToken, sshAccess, sshdDropIn } from "./inputs.js";
import { installLayout, uninstallLayout } from "./layout.js";
import type { Wanted } from "./tree.js";

const owners = { root: { uid: 0, gid: 0 }, plexd: { uid: 999, gid: 999 }, rootPlexd: { uid: 0, gid: 999 } };
const f = (rel: string, executable = false) => ({ rel, content: Buffer.from(rel), executable });
const artifact = {
  dir: "/a",
  files: [f("plexd.js", true), f("plexd-cli.js", true), f("chunks/c.js"), f("systemd/plexd.service"), f("systemd/plexd-privhelper.service"), f("doc/README.md"), f("SHA256SUMS")],
};

function byPath(ws: Wanted[]): Map<string, Wanted> {
  return new Map(ws.map((w) => [w.path, w]));
}

describe("installLayout", () => {
  const ws = byPath(installLayout({ root: "/t", artifact, libNow: ["old.js", "chunks", "chunks/c.js", "gone", "gone/x.js"], owners, newConfig: Buffer.from("api: x\n"), token: Buffer.from("tok\n") }));

  it("puts configuration, token and state where they belong, with their owners and modes", () => {
    expect(ws.get("/t/etc/plexd")).toMatchObject({ kind: "dir", mode: 0o755, owner: owners.root });
    expect(ws.get("/t/etc/plexd/config.yaml")).toMatchObject({ kind: "file", mode: 0o640, owner: owners.rootPlexd, keep: true });
    expect(ws.get("/t/etc/plexd/bootstrap-token")).toMatchObject({ kind: "file", mode: 0o640, owner: owners.rootPlexd, content: Buffer.from("tok\n") });
    expect(ws.get("/t/etc/plexd/environment")).toMatchObject({ kind: "file", mode: 0o600, owner: owners.root });
    expect(ws.get("/t/etc/plexd/environment")).not.toHaveProperty("content");
    expect(ws.get("/t/var/lib/plexd")).toMatchObject({ kind: "dir", mode: 0o700, owner: owners.plexd });
    expect(ws.get("/t/etc/systemd/system/plexd.service")).toMatchObject({ kind: "file", mode: 0o644, content: Buffer.from("systemd/plexd.service") });
    expect(ws.get("/t/usr/local/bin/plexd")).toEqual({ kind: "link", path: "/t/usr/local/bin/plexd", target: "../lib/plexd/plexd.js" });
    expect(ws.get("/t/usr/local/share/doc/plexd/README.md")).toMatchObject({ kind: "file", mode: 0o644 });
  });

  it("installs the release whole: executables 0755, the rest 0644, files of an older release removed", () => {
    expect(ws.get("/t/usr/local/lib/plexd/plexd.js")).toMatchObject({ mode: 0o755 });
    expect(ws.get("/t/usr/local/lib/plexd/chunks/c.js")).toMatchObject({ mode: 0o644 });
    expect(ws.get("/t/usr/local/lib/plexd/old.js")).toEqual({ kind: "absent", path: "/t/usr/local/lib/plexd/old.js" });
    // A stale directory goes as a whole, not file by file.
    expect(ws.get("/t/usr/local/lib/plexd/gone")).toEqual({ kind: "absent", path: "/t/usr/local/lib/plexd/gone" });
    expect(ws.has("/t/usr/local/lib/plexd/gone/x.js")).toBe(false);
    expect(ws.has("/t/usr/local/lib/plexd/chunks")).toBe(true);
  });

  it("writes the sshd drop-in only when SSH access is on, and removes an old one otherwise", () => {
    expect(ws.get("/t/etc/ssh/sshd_config.d/plexd.conf")).toEqual({ kind: "absent", path: "/t/etc/ssh/sshd_config.d/plexd.conf" });
    const on = byPath(installLayout({ root: "/", artifact, libNow: [], owners, sshdDropIn: Buffer.from("x") }));
    expect(on.get("/etc/ssh/sshd_config.d/plexd.conf")).toMatchObject({ kind: "file", mode: 0o644, owner: owners.root });
  });
});

describe("uninstallLayout", () => {
  it("removes programs and units, and configuration and state only with purge", () => {
    const keep = uninstallLayout("/", false).map((w) => w.path);
    expect(keep).toEqual(expect.arrayContaining(["/etc/systemd/system/plexd.service", "/usr/local/bin/plexd", "/usr/local/lib/plexd", "/etc/ssh/sshd_config.d/plexd.conf"]));
    expect(keep).not.toContain("/etc/plexd");
    expect(uninstallLayout("/r", true).map((w) => w.path)).toEqual(expect.arrayContaining(["/r/etc/plexd", "/r/var/lib/plexd"]));
  });
});

describe("inputs", () => {
  it("accepts a token of printable ASCII up to 512 bytes, dropping one trailing newline", () => {
    expect(checkToken(Buffer.from("abc-123\n"), "f")).toEqual({ token: "abc-123" });
    expect(checkToken(Buffer.from("x".repeat(512)), "f").token).toHaveLength(512);
    expect(checkToken(Buffer.from("x".repeat(513)), "f").problem).toBe("f: the bootstrap token is 513 bytes, at most 512 are allowed");
    expect(checkToken(Buffer.from("\n"), "f").problem).toBe("f: the bootstrap token is empty");
    expect(checkToken(Buffer.from("a b"), "f").problem).toMatch(/printable ASCII/);
    expect(checkToken(Buffer.from("a\nb\n"), "f").problem).toMatch(/printable ASCII/);
  });

  it("checks the control plane URL", () => {
    expect(checkApiUrl("https://cp.example.com")).toBeUndefined();
    expect(checkApiUrl("cp.example.com")).toMatch(/not a URL/);
    expect(checkApiUrl("ftp://cp")).toMatch(/must be an https/);
  });

  it("reads access.ssh as the agent does: on unless set false", () => {
    expect(sshAccess("api: x\n", "c").ssh).toEqual({ enabled: true, hostKeyFile: "/var/lib/plexd/ssh_host_key" });
    expect(sshAccess("access:\n  ssh:\n    enabled: false\n", "c").ssh?.enabled).toBe(false);
    expect(sshAccess("access:\n  ssh:\n    enabled: maybe\n", "c").problem).toBe("c: access.ssh.enabled must be true or false");
    expect(sshAccess("a: [", "c").problem).toMatch(/^c: not valid YAML/);
  });

  it("makes the sshd drop-in ask plexd for authorized keys and serve the agent's host key", () => {
    const text = sshdDropIn({ enabled: true, hostKeyFile: "/var/lib/plexd/ssh_host_key" }, "/nonexistent-root");
    expect(text).toContain("HostKey /var/lib/plexd/ssh_host_key\n");
    expect(text).toContain("AuthorizedKeysCommand /usr/local/bin/plexd access authorized-keys %u %f\n");
    expect(text).toContain("AuthorizedKeysCommandUser plexd\n");
    expect(text).toContain("PermitUserEnvironment PLEXD_SESSION_TOKEN\n");
  });
});
