import { chmodSync, chownSync, copyFileSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { createTopology, makeTempDir, nsExec, spawnInNamespace, useHarness, type Topology } from "./harness/vitest.js";
import { buildRelease, repoRoot, type BuiltRelease } from "./lib/release.js";

// The one-line install as an operator runs it: install.sh, fetched with curl from a web server
// (in its own network namespace) that serves a release built by `npm run release`, installs
// into a directory tree (--root) from another namespace. The tree must hold every path with
// the owner and mode docs/install.md lists, a second install must change nothing, a tampered
// tarball must install nothing, and uninstall --purge must leave the tree as it was.

useHarness();

let release: BuiltRelease;
let topo: Topology;
let url: string;
const token = "plexd-bootstrap-0123456789abcdef";

beforeAll(async () => {
  release = await buildRelease();
  topo = await createTopology({ nodes: ["client"] });
  // The web site: <url>/install.sh, <url>/<version>/ and <url>/latest/ with tarball and SHA256SUMS.
  const site = makeTempDir("site", { mode: 0o755 });
  copyFileSync(join(release.unpacked, "install.sh"), join(site, "install.sh"));
  for (const d of [release.version, "latest", "tampered"]) {
    mkdirSync(join(site, d), { mode: 0o755 });
    for (const f of [release.tarball, "SHA256SUMS"]) copyFileSync(join(release.dir, f), join(site, d, f));
  }
  // One byte changed in the middle of the tarball; SHA256SUMS still has the true sum.
  const bad = readFileSync(join(site, "tampered", release.tarball));
  bad[bad.length >> 1] = bad[bad.length >> 1]! ^ 0x01;
  writeFileSync(join(site, "tampered", release.tarball), bad);
  const server = spawnInNamespace({ ns: topo.hub.ns, name: "http", argv: ["python3", "-m", "http.server", "--bind", topo.hub.ip, "8080", "--directory", site] });
  await server.waitForLine(/Serving HTTP/, 10_000);
  url = `http://${topo.hub.ip}:8080`;
}, 240_000);

/** A small Debian-like tree: accounts files and the system directories plexd installs into. */
function skeleton(): string {
  const root = makeTempDir("root", { mode: 0o755 });
  for (const d of ["etc", "etc/systemd", "etc/systemd/system", "etc/ssh", "etc/ssh/sshd_config.d", "usr", "usr/local", "usr/local/bin", "usr/local/lib", "usr/local/share", "usr/local/share/doc", "var", "var/lib"]) {
    mkdirSync(join(root, d), { mode: 0o755 });
  }
  writeFileSync(join(root, "etc/passwd"), "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n", { mode: 0o644 });
  writeFileSync(join(root, "etc/group"), "root:x:0:\nshadow:x:42:\nnogroup:x:65534:\n", { mode: 0o644 });
  writeFileSync(join(root, "etc/shadow"), "root:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n", { mode: 0o640 });
  chownSync(join(root, "etc/shadow"), 0, 42);
  chmodSync(join(root, "etc/shadow"), 0o640);
  return root;
}

interface Seen {
  kind: "dir" | "file" | "link";
  mode: number;
  uid: number;
  gid: number;
  /** Link target, or file content for small files. */
  body?: string;
  stamp: string;
}

/** Every path of the tree with kind, owner, mode, and (for "changes nothing") inode and times. */
function snapshot(root: string, dir = root, out = new Map<string, Seen>()): Map<string, Seen> {
  for (const e of readdirSync(dir)) {
    const p = join(dir, e);
    const st = lstatSync(p);
    const kind = st.isSymbolicLink() ? "link" : st.isDirectory() ? "dir" : "file";
    const body = kind === "link" ? readlinkSync(p) : kind === "file" && st.size < 4096 ? readFileSync(p, "utf8") : undefined;
    out.set(p.slice(root.length + 1), { kind, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, ...(body !== undefined ? { body } : {}), stamp: `${st.ino}/${st.mtimeMs}/${st.ctimeMs}` });
    if (kind === "dir") snapshot(root, p, out);
  }
  return out;
}

const withoutStamps = (m: Map<string, Seen>): Map<string, Omit<Seen, "stamp">> => new Map([...m].map(([k, { stamp: _s, ...v }]) => [k, v]));

/** `curl <url>/install.sh | sh -s -- ARGS` in the client namespace. */
async function installSh(args: string[], env: Record<string, string> = {}) {
  const r = await nsExec(topo.node("client").ns, ["sh", "-c", `curl -fsS "$PLEXD_ARTIFACT_URL/install.sh" | sh -s -- "$@"`, "install.sh", ...args], {
    env: { PLEXD_ARTIFACT_URL: url, ...env },
    reject: false,
    timeoutMs: 120_000,
  });
  return { code: r.exitCode, out: `${r.stdout}\n${r.stderr}` };
}

function idsOf(root: string, file: "passwd" | "group"): Map<string, number> {
  return new Map(
    readFileSync(join(root, "etc", file), "utf8")
      .split("\n")
      .filter((l) => l !== "")
      .map((l) => [l.split(":")[0]!, Number(l.split(":")[2])] as const),
  );
}

// Path, kind, owner user:group, mode: the layout docs/install.md promises.
const table: [string, "dir" | "file" | "link", string, number | string][] = [
  ["etc/plexd", "dir", "root:root", 0o755],
  ["etc/plexd/hooks.d", "dir", "root:root", 0o755],
  ["etc/plexd/config.yaml", "file", "root:plexd", 0o640],
  ["etc/plexd/bootstrap-token", "file", "root:plexd", 0o640],
  ["var/lib/plexd", "dir", "plexd:plexd", 0o700],
  ["etc/systemd/system/plexd.service", "file", "root:root", 0o644],
  ["etc/systemd/system/plexd-privhelper.service", "file", "root:root", 0o644],
  ["etc/ssh/sshd_config.d/plexd.conf", "file", "root:root", 0o644],
  ["usr/local/bin/plexd", "link", "root:root", "../lib/plexd/plexd.js"],
  ["usr/local/bin/plexd-agent", "link", "root:root", "../lib/plexd/plexd-agent.js"],
  ["usr/local/bin/plexd-privhelper", "link", "root:root", "../lib/plexd/plexd-privhelper.js"],
  ["usr/local/bin/plexd-mockcp", "link", "root:root", "../lib/plexd/plexd-mockcp.js"],
  ["usr/local/lib/plexd", "dir", "root:root", 0o755],
  ["usr/local/lib/plexd/plexd.js", "file", "root:root", 0o755],
  ["usr/local/lib/plexd/plexd-cli.js", "file", "root:root", 0o755],
  ["usr/local/lib/plexd/plexd-agent.js", "file", "root:root", 0o755],
  ["usr/local/lib/plexd/plexd-privhelper.js", "file", "root:root", 0o755],
  ["usr/local/lib/plexd/plexd-mockcp.js", "file", "root:root", 0o755],
  ["usr/local/lib/plexd/peercred.node", "file", "root:root", 0o644],
  ["usr/local/lib/plexd/SHA256SUMS", "file", "root:root", 0o644],
  ["usr/local/share/doc/plexd", "dir", "root:root", 0o755],
  ["usr/local/share/doc/plexd/README.md", "file", "root:root", 0o644],
  ["usr/local/share/doc/plexd/install.md", "file", "root:root", 0o644],
];

describe("install.sh and plexd install/uninstall --root", () => {
  it("installs every path with its owner and mode, twice without a change, and uninstall --purge leaves the tree as it was", async () => {
    const root = skeleton();
    const before = snapshot(root);
    const first = await installSh(["--root", root, "--api-url", "https://cp.example.com:8443", "--no-start"], { PLEXD_BOOTSTRAP_TOKEN: token });
    expect(first.code, first.out).toBe(0);
    expect(first.out).toMatch(/verified plexd-.*\.tar\.gz/);
    expect(first.out).toMatch(/skipped systemctl daemon-reload, enable: --root .* is not the running system/);

    // Accounts in the tree's own files, none on the host's.
    const users = idsOf(root, "passwd");
    const groups = idsOf(root, "group");
    expect(readFileSync(join(root, "etc/passwd"), "utf8")).toMatch(/^plexd:x:\d+:\d+:[^:]*:\/var\/lib\/plexd:\/usr\/sbin\/nologin$/m);
    expect([...groups.keys()]).toEqual(expect.arrayContaining(["plexd", "plexd-secrets"]));
    expect(readFileSync(join(root, "etc/shadow"), "utf8")).toMatch(/^plexd:!:/m);
    expect(lstatSync(join(root, "etc/shadow")).gid).toBe(42);
    const name = (uid: number, gid: number): string => `${[...users].find(([, v]) => v === uid)?.[0] ?? uid}:${[...groups].find(([, v]) => v === gid)?.[0] ?? gid}`;

    const after = snapshot(root);
    const problems: string[] = [];
    for (const [path, kind, owner, modeOrTarget] of table) {
      const s = after.get(path);
      if (s === undefined) {
        problems.push(`${path}: missing`);
        continue;
      }
      const want = kind === "link" ? `link -> ${String(modeOrTarget)}` : `${kind} ${owner} ${(modeOrTarget as number).toString(8)}`;
      const got = s.kind === "link" ? `link -> ${s.body}` : `${s.kind} ${name(s.uid, s.gid)} ${s.mode.toString(8)}`;
      if (want !== got) problems.push(`${path}: want ${want}, got ${got}`);
    }
    // Nothing else: every other new path is part of the release under usr/local/lib/plexd,
    // root's and not writable by anyone else.
    const listed = new Set(table.map(([p]) => p));
    for (const [path, s] of after) {
      if (before.has(path) || listed.has(path)) continue;
      // The operator docs (every docs/ page) sit beside README.md, root:root 0644 like it.
      if (path.startsWith("usr/local/share/doc/plexd/") && path.endsWith(".md")) {
        if (s.uid !== 0 || s.gid !== 0 || (s.mode & 0o7777) !== 0o644) problems.push(`${path}: ${name(s.uid, s.gid)} ${s.mode.toString(8)}`);
      } else if (!path.startsWith("usr/local/lib/plexd/")) problems.push(`${path}: not expected`);
      else if (s.uid !== 0 || s.gid !== 0 || (s.mode & 0o022) !== 0) problems.push(`${path}: ${name(s.uid, s.gid)} ${s.mode.toString(8)}`);
    }
    expect(problems).toEqual([]);
    expect(after.get("etc/plexd/bootstrap-token")!.body).toBe(`${token}\n`);
    expect(after.get("etc/plexd/config.yaml")!.body).toMatch(/^api: "https:\/\/cp\.example\.com:8443"$/m);
    for (const u of ["plexd.service", "plexd-privhelper.service"]) {
      expect(after.get(`etc/systemd/system/${u}`)!.body).toBe(readFileSync(join(repoRoot, "deploy/systemd", u), "utf8"));
    }
    expect(after.get("etc/ssh/sshd_config.d/plexd.conf")!.body).toMatch(/^AuthorizedKeysCommand \/usr\/local\/bin\/plexd access authorized-keys %u %f$/m);

    // Twice: nothing rewritten, no inode, mtime or ctime moved. Without --no-start the
    // start is skipped too, and said so.
    const second = await installSh(["--root", root], { PLEXD_BOOTSTRAP_TOKEN: token });
    expect(second.code, second.out).toBe(0);
    expect(second.out).toMatch(/nothing to change/);
    expect(second.out).toMatch(/skipped systemctl daemon-reload, enable and start: --root .* is not the running system/);
    expect(snapshot(root)).toEqual(after);
    // The installed tree is a release itself: its own plexd installs it again, changing nothing.
    const self = await nsExec(topo.node("client").ns, [join(root, "usr/local/bin/plexd"), "install", "--root", root, "--no-start"], { reject: false });
    expect(self.exitCode, self.stdout + self.stderr).toBe(0);
    expect(self.stdout).toMatch(/nothing to change/);
    expect(snapshot(root)).toEqual(after);

    // An existing config and token with the wrong owner and mode are set right, content kept.
    chmodSync(join(root, "etc/plexd/config.yaml"), 0o644);
    chownSync(join(root, "etc/plexd/bootstrap-token"), 0, 0);
    const fix = await installSh(["--root", root, "--no-start"]);
    expect(fix.code, fix.out).toBe(0);
    expect(withoutStamps(snapshot(root))).toEqual(withoutStamps(after));

    // An upgrade over an older release: changed files replaced, files it no longer has removed.
    writeFileSync(join(root, "usr/local/lib/plexd/plexd-cli.js"), "// an older release\n");
    writeFileSync(join(root, "usr/local/lib/plexd/chunks/old-chunk.js"), "// gone in this release\n");
    const upgrade = await installSh(["--root", root, "--no-start"]);
    expect(upgrade.code, upgrade.out).toBe(0);
    expect(upgrade.out).toMatch(/updated 2 files and directories under .*usr\/local\/lib\/plexd\//);
    expect(withoutStamps(snapshot(root))).toEqual(withoutStamps(after));

    // The installed plexd uninstalls: without --purge configuration, state and accounts stay.
    const plexd = join(root, "usr/local/bin/plexd");
    const kept = await nsExec(topo.node("client").ns, [plexd, "uninstall", "--root", root], { reject: false });
    expect(kept.exitCode, kept.stdout + kept.stderr).toBe(0);
    const afterKeep = snapshot(root);
    expect([...afterKeep.keys()].filter((p) => p.startsWith("usr/local/lib/plexd") || p.startsWith("etc/systemd/system/plexd") || p.startsWith("usr/local/bin/plexd"))).toEqual([]);
    for (const p of ["etc/plexd/config.yaml", "etc/plexd/bootstrap-token", "var/lib/plexd"]) expect(afterKeep.has(p), p).toBe(true);

    // Installed again from the unpacked artifact, then purged: the tree is as it was.
    const again = await nsExec(topo.node("client").ns, [join(release.unpacked, "bin/plexd"), "install", "--root", root, "--no-start"], { reject: false });
    expect(again.exitCode, again.stdout + again.stderr).toBe(0);
    const purge = await nsExec(topo.node("client").ns, [plexd, "uninstall", "--purge", "--root", root], { reject: false });
    expect(purge.exitCode, purge.stdout + purge.stderr).toBe(0);
    expect(withoutStamps(snapshot(root))).toEqual(withoutStamps(before));
  });

  it("refuses a tarball whose SHA-256 does not match and installs nothing", async () => {
    const root = skeleton();
    const before = snapshot(root);
    const r = await installSh(["--root", root, "--version", "tampered", "--api-url", "https://cp.example.com:8443"], { PLEXD_BOOTSTRAP_TOKEN: token });
    expect(r.code).not.toBe(0);
    expect(r.out).toMatch(/SHA-256 mismatch for plexd-[^ ]+-linux-amd64\.tar\.gz: SHA256SUMS says [0-9a-f]{64}, the download is [0-9a-f]{64}.*Nothing was installed/);
    expect(snapshot(root)).toEqual(before);
  });

  it("refuses bad input with every problem listed and changes nothing", async () => {
    const root = skeleton();
    const before = snapshot(root);
    const tokenFile = join(makeTempDir("token"), "t");
    writeFileSync(tokenFile, "has spaces in it\n", { mode: 0o600 });
    // No config and no --api-url, and an unusable token: both reported, nothing written.
    const r = await nsExec(topo.node("client").ns, [join(release.unpacked, "bin/plexd"), "install", "--root", root, "--token-file", tokenFile], { reject: false });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/nothing was changed/);
    expect(r.stderr).toMatch(/config\.yaml does not exist: give --api-url/);
    expect(r.stderr).toMatch(/bootstrap token must be printable ASCII/);
    expect(snapshot(root)).toEqual(before);
    // A token in argv is refused by the script before anything is downloaded.
    const argvToken = await installSh(["--root", root, "--token", token]);
    expect(argvToken.code).not.toBe(0);
    expect(argvToken.out).toMatch(/--token is not accepted/);
    expect(snapshot(root)).toEqual(before);
  });
});
